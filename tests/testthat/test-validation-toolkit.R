# Bad R values given to learning_rate_schedule_swa(), callback_swa() and
# swa_update_bn() are refused in R, with an error that names the argument,
# before Python is touched.

# `fun` called with `args`, where `arg` is set to `value` (NULL included).
expect_refused_by <- function(fun, args, arg, value,
                              pattern = paste0("^`", arg, "` must be")) {
  args[arg] <- list(value)
  expect_error(
    do.call(fun, args), regexp = pattern, class = "kerasswa_bad_argument",
    label = sprintf("%s = %s", arg, paste(deparse(value), collapse = " "))
  )
}

schedule_args <- list(base_learning_rate = 0.1, swa_learning_rate = 0.02,
                      start_averaging = 5)

test_that("learning_rate_schedule_swa() refuses bad rates", {
  for (arg in c("base_learning_rate", "swa_learning_rate")) {
    for (value in list(NA, NA_real_, NaN, -0.1, 0, Inf, TRUE, "0.1",
                       c(0.1, 0.2), numeric(0), NULL, list(0.1)))
      expect_refused_by(learning_rate_schedule_swa, schedule_args, arg, value)
  }
  expect_error(
    learning_rate_schedule_swa(-1, 0.02, 5), fixed = TRUE,
    "`base_learning_rate` must be a Keras learning-rate schedule, or a single finite number > 0.\nReceived: base_learning_rate = -1"
  )
  expect_error(
    learning_rate_schedule_swa(0.1, "0.02", 5), fixed = TRUE,
    "`swa_learning_rate` must be a single finite number > 0.\nReceived: swa_learning_rate = \"0.02\""
  )
})

test_that("learning_rate_schedule_swa() refuses bad counts", {
  for (value in list(NA, NaN, -1, 2.5, Inf, TRUE, "5", c(1, 2), NULL)) {
    expect_refused_by(learning_rate_schedule_swa, schedule_args,
                      "start_averaging", value)
    expect_refused_by(learning_rate_schedule_swa, schedule_args,
                      "anneal_steps", value)
  }
  for (value in list(0, -1, 2.5, NA, TRUE, "4", c(4, 8)))
    expect_refused_by(learning_rate_schedule_swa, schedule_args,
                      "cycle_length", value)
  expect_error(learning_rate_schedule_swa(0.1, 0.02, 2.5), fixed = TRUE,
               "`start_averaging` must be a single whole number >= 0.\nReceived: start_averaging = 2.5")
  expect_error(
    learning_rate_schedule_swa(0.1, 0.02, 5, cycle_length = 0), fixed = TRUE,
    "`cycle_length` must be NULL or a single whole number >= 1.\nReceived: cycle_length = 0"
  )
})

test_that("learning_rate_schedule_swa() refuses a bad strategy or name", {
  for (value in list("cosine", "", NA, NA_character_, 1, TRUE,
                     c("cos", "linear", "step"), character(0)))
    expect_refused_by(learning_rate_schedule_swa, schedule_args,
                      "anneal_strategy", value)
  expect_error(
    learning_rate_schedule_swa(0.1, 0.02, 5, anneal_strategy = "step"),
    fixed = TRUE,
    "`anneal_strategy` must be one of \"cos\", \"linear\".\nReceived: anneal_strategy = \"step\""
  )
  for (value in list("", NA_character_, 1, TRUE, c("a", "b")))
    expect_refused_by(learning_rate_schedule_swa, schedule_args, "name", value)
})

test_that("anneal_steps and cycle_length together are refused", {
  expect_error(
    learning_rate_schedule_swa(0.1, 0.02, 5, anneal_steps = 3,
                               cycle_length = 4),
    class = "kerasswa_bad_argument", fixed = TRUE,
    "Give `anneal_steps` or `cycle_length`, not both: a cyclic schedule falls to `swa_learning_rate` in every cycle.\nReceived: anneal_steps = 3, cycle_length = 4"
  )
})

test_that("callback_swa() refuses bad data", {
  for (value in list("x", TRUE, NA, NA_real_, c(1, NA), numeric(0), list(),
                     data.frame(a = 1:2), factor("a"), function(x) x))
    expect_refused_by(callback_swa, list(), "bn_data", value)
  expect_refused_by(callback_swa, list(), "bn_data", list(1:3, "y"),
                    pattern = "^`bn_data\\[\\[2\\]\\]` must be")
  expect_error(callback_swa(bn_data = matrix("a", 2, 2)), fixed = TRUE,
               "`bn_data` must be a non-empty R array or matrix of finite numbers, a list of them (one per input), or a Python object such as a NumPy array or a tf.data.Dataset.\nReceived: bn_data = <character array of dimensions 2 x 2>")
})

test_that("callback_swa() refuses validation_data that is not list(x, y[, w])", {
  x <- matrix(1, 4, 2)
  y <- 1:4
  for (value in list(x, "data", TRUE, list(x), list(x, y, y, y),
                     data.frame(x = 1:4, y = 1:4), list()))
    expect_refused_by(callback_swa, list(), "validation_data", value)
  expect_refused_by(callback_swa, list(), "validation_data", list(x, "y"),
                    pattern = "^`validation_data\\[\\[2\\]\\]` must be")
  expect_refused_by(callback_swa, list(), "validation_data", list(x, y, NA),
                    pattern = "^`validation_data\\[\\[3\\]\\]` must be")
  expect_error(callback_swa(validation_data = list(x)), fixed = TRUE,
               "`validation_data` must be NULL or a list of 2 or 3 elements: list(x, y) or list(x, y, sample_weight).\nReceived: validation_data = list(<double array of dimensions 4 x 2>)")
})

test_that("callback_swa() refuses bad counts, flags and verbosity", {
  for (value in list(0, -1, 2.5, NA, Inf, TRUE, "32", c(1, 2), NULL))
    expect_refused_by(callback_swa, list(), "bn_batch_size", value)
  for (arg in c("bn_steps", "validation_batch_size", "finish_after_epoch")) {
    for (value in list(0, -1, 2.5, NA, Inf, TRUE, "1", c(1, 2)))
      expect_refused_by(callback_swa, list(), arg, value)
  }
  for (value in list(NA, 1, 0, "TRUE", c(TRUE, FALSE), logical(0), NULL))
    expect_refused_by(callback_swa, list(), "average_non_trainable", value)
  for (value in list(2, -1, 0.5, NA, "1", c(0, 1), NULL, list(0)))
    expect_refused_by(callback_swa, list(), "verbose", value)
  expect_error(callback_swa(finish_after_epoch = 2.5), fixed = TRUE,
               "`finish_after_epoch` must be NULL or a single whole number >= 1.\nReceived: finish_after_epoch = 2.5")
  expect_error(callback_swa(verbose = 2), fixed = TRUE,
               "`verbose` must be 0, 1, FALSE or TRUE.\nReceived: verbose = 2")
})

test_that("bn_data and average_non_trainable = TRUE together are refused", {
  expect_error(
    callback_swa(bn_data = matrix(1, 10, 3), average_non_trainable = TRUE),
    class = "kerasswa_bad_argument", fixed = TRUE,
    "Give `bn_data` (recompute the batch-normalization statistics) or `average_non_trainable = TRUE` (average them), not both.\nReceived: bn_data = <double array of dimensions 10 x 3>, average_non_trainable = TRUE"
  )
})

test_that("swa_update_bn() refuses what is not a Keras model", {
  for (value in list(NULL, 1, "model", list(), function(x) x, matrix(1, 2, 2)))
    expect_refused_by(swa_update_bn, list(data = matrix(1, 2, 2)), "model",
                      value)
  expect_error(swa_update_bn("model", 1), fixed = TRUE,
               "`model` must be a Keras model.\nReceived: model = \"model\"")
  # The error comes from the user's call.
  error <- tryCatch(swa_update_bn(1, 1), error = identity)
  expect_identical(conditionCall(error)[[1]], quote(swa_update_bn))
})

test_that("swa_update_bn() refuses bad data, counts and verbosity", {
  skip_if_no_kerasswa()
  expect_refused_by(swa_update_bn, list(model = layer_dense(units = 1),
                                        data = 1),
                    "model", layer_dense(units = 1))
  args <- list(model = batch_norm_model(), data = matrix(1, 8, 4))
  for (value in list(NULL, "x", TRUE, NA, c(1, NA), list(),
                     data.frame(a = 1:2)))
    expect_refused_by(swa_update_bn, args, "data", value)
  for (value in list(0, -1, 2.5, NA, TRUE, "32", NULL))
    expect_refused_by(swa_update_bn, args, "batch_size", value)
  for (value in list(0, -1, 2.5, NA, TRUE, "1"))
    expect_refused_by(swa_update_bn, args, "steps", value)
  for (value in list(2, NA, "0", NULL))
    expect_refused_by(swa_update_bn, args, "verbose", value)
})
