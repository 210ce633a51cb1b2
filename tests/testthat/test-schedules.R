# The schedule called from R at each step, as R numbers.
rates_at <- function(schedule, steps) {
  vapply(steps, function(step) as_r_vector(schedule(as.integer(step))), 0)
}

test_that("the rate switches to the SWA rate at start_averaging", {
  skip_if_no_kerasswa()
  schedule <- learning_rate_schedule_swa(0.1, 0.02, start_averaging = 5)
  expect_s3_class(schedule, "kerasswa.schedules.SWALearningRateSchedule")
  expect_equal(rates_at(schedule, c(0, 4, 5, 100)), c(0.1, 0.1, 0.02, 0.02),
               tolerance = 1e-7)
})

test_that("the rate anneals along a cosine or a line", {
  skip_if_no_kerasswa()
  cosine <- learning_rate_schedule_swa(0.1, 0.02, start_averaging = 10,
                                       anneal_steps = 8)
  # Steps 10, 12, 14, 18 are 0, 1/4, 1/2 and all of the way:
  # 0.02 + 0.08 * (1 + cos(pi * p)) / 2.
  expect_equal(rates_at(cosine, c(9, 10, 12, 14, 18, 30)),
               c(0.1, 0.1, 0.02 + 0.04 * (1 + sqrt(0.5)), 0.06, 0.02, 0.02),
               tolerance = 1e-6)
  # Partial matching, as match.arg() does: 0.02 + 0.08 * (1 - p).
  linear <- learning_rate_schedule_swa(0.1, 0.02, start_averaging = 10,
                                       anneal_steps = 8,
                                       anneal_strategy = "lin")
  expect_identical(linear$anneal_strategy, "linear")
  expect_equal(rates_at(linear, c(10, 12, 14, 16, 18)),
               c(0.1, 0.08, 0.06, 0.04, 0.02), tolerance = 1e-6)
})

test_that("a cyclic schedule reaches the SWA rate every cycle_length steps", {
  skip_if_no_kerasswa()
  cyclic <- learning_rate_schedule_swa(0.05, 0.01, start_averaging = 6,
                                       cycle_length = 4)
  expect_equal(rates_at(cyclic, 5:14),
               c(0.05, 0.01, 0.04, 0.03, 0.02, 0.01, 0.04, 0.03, 0.02, 0.01),
               tolerance = 1e-6)
})

test_that("the base rate can be a Keras schedule", {
  skip_if_no_kerasswa()
  halving <- learning_rate_schedule_exponential_decay(
    0.1, decay_steps = 1, decay_rate = 0.5
  )
  schedule <- learning_rate_schedule_swa(halving, 0.01, start_averaging = 3,
                                         anneal_steps = 2,
                                         anneal_strategy = "linear")
  # 0.1 * 0.5^t before step 3; then from 0.1 * 0.5^3 = 0.0125 down to 0.01.
  expect_equal(rates_at(schedule, 0:6),
               c(0.1, 0.05, 0.025, 0.0125, 0.01125, 0.01, 0.01),
               tolerance = 1e-6)
})

test_that("the arguments reach Python with Python's types", {
  skip_if_no_kerasswa()
  schedule <- learning_rate_schedule_swa(1, 0.5, start_averaging = 5,
                                         cycle_length = 2, name = "swa_lr")
  expect_identical(schedule$base_learning_rate, 1)
  expect_identical(schedule$start_averaging, 5L)
  expect_identical(schedule$anneal_steps, 0L)
  expect_identical(schedule$anneal_strategy, "cos")
  expect_identical(schedule$cycle_length, 2L)
  expect_identical(schedule$name, "swa_lr")
  expect_null(learning_rate_schedule_swa(1, 0.5, 5)$cycle_length)
})

test_that("the inner optimizer of optimizer_swa() follows the schedule", {
  skip_if_no_kerasswa()
  schedule <- learning_rate_schedule_swa(0.1, 0.02, start_averaging = 5)
  swa <- optimizer_swa(optimizer_sgd(learning_rate = schedule),
                       start_averaging = 5)
  swa$iterations$assign(4)
  expect_equal(as_r_vector(swa$learning_rate), 0.1, tolerance = 1e-7)
  swa$iterations$assign(5)
  expect_equal(as_r_vector(swa$learning_rate), 0.02, tolerance = 1e-7)
})
