test_that("optimizer_swa() returns the Python SWA optimizer with its arguments", {
  skip_if_no_kerasswa()
  sgd <- optimizer_sgd(learning_rate = 0.01)
  swa <- optimizer_swa(sgd, start_averaging = 5, average_period = 2,
                       name = "my_swa", sequential_update = FALSE,
                       clipvalue = 0.5)
  expect_s3_class(swa, "kerasswa.swa.SWA")
  # Whole doubles end up as Python ints (a Python float would come back as an
  # R double).
  expect_identical(swa$start_averaging, 5L)
  expect_identical(swa$average_period, 2L)
  expect_identical(swa$name, "my_swa")
  expect_false(swa$sequential_update)
  expect_equal(swa$clipvalue, 0.5)
  expect_null(swa$clipnorm)
  # The very optimizer given, not a copy.
  expect_true(reticulate::py_id(swa$inner_optimizer) == reticulate::py_id(sgd))
})

test_that("the defaults are those of tfa.optimizers.SWA", {
  skip_if_no_kerasswa()
  swa <- optimizer_swa("sgd")
  expect_identical(swa$start_averaging, 0L)
  expect_identical(swa$average_period, 10L)
  expect_identical(swa$name, "SWA")
  expect_true(swa$sequential_update)
  expect_s3_class(swa$inner_optimizer, "keras.src.optimizers.sgd.SGD")
})

test_that("lr is a deprecated alias of learning_rate; decay takes effect", {
  skip_if_no_kerasswa()
  expect_warning(
    swa <- optimizer_swa(optimizer_sgd(learning_rate = 0.01), lr = 0.5),
    "`lr` is deprecated: use `learning_rate` instead.", fixed = TRUE,
    class = "deprecatedWarning"
  )
  expect_equal(as_r_vector(swa$inner_optimizer$learning_rate), 0.5)

  swa <- optimizer_swa(optimizer_sgd(learning_rate = 0.01),
                       learning_rate = 0.25, global_clipnorm = 2)
  expect_equal(as_r_vector(swa$learning_rate), 0.25)
  expect_equal(swa$global_clipnorm, 2)

  # Keras 2's decay: lr / (1 + decay * t) = 0.5 / (1 + 1 * 3) at t = 3.
  swa <- optimizer_swa(optimizer_sgd(learning_rate = 0.5), decay = 1)
  swa$iterations$assign(3)
  expect_equal(as_r_vector(swa$learning_rate), 0.125, tolerance = 1e-6)
})

test_that("a Python object that is not a Keras 3 optimizer is refused in R", {
  skip_if_no_kerasswa()
  expect_error(optimizer_swa(layer_dense(units = 1)),
               "^`optimizer` must be a Keras 3 optimizer.*Received: optimizer = <Python object of class keras.src.layers.core.dense.Dense>",
               class = "kerasswa_bad_argument")
  expect_error(optimizer_swa(optimizer_swa("sgd")),
               "^`optimizer` must be the optimizer that computes the updates, not an SWA optimizer",
               class = "kerasswa_bad_argument")
  # Python's own checks still apply to what R cannot judge.
  expect_error(optimizer_swa("no_such_optimizer"),
               "`optimizer` must name a Keras optimizer")
})

# The tensorflow-addons unit test (CONTRACT.md): SGD with learning rate 1,
# averaging from update 0 at every update, gradient 0.1 on every element.
# The weights go 1 -> 0.9 -> 0.8 -> 0.7 (and 2 -> 1.9 -> 1.8 -> 1.7).
tfa_example <- function(sequential_update) {
  weights <- list(new_variable(c(1, 1)),
                  new_variable(c(2, 2)))
  swa <- optimizer_swa(optimizer_sgd(learning_rate = 1),
                       start_averaging = 0, average_period = 1,
                       sequential_update = sequential_update)
  gradient <- op_full(2, 0.1)
  for (update in 1:3)
    swa$apply(list(gradient, gradient), weights)
  values <- function() lapply(weights, as_r_vector)
  trained <- values()
  swa$assign_average_vars(weights)
  list(trained = trained, averaged = values(),
       snapshots = swa_snapshot_count(swa))
}

test_that("the tfa worked example gives tfa's numbers", {
  skip_if_no_kerasswa()
  result <- tfa_example(sequential_update = TRUE)
  expect_equal(result$trained, list(c(0.7, 0.7), c(1.7, 1.7)),
               tolerance = 1e-6)
  # mean(0.9, 0.8, 0.7) and mean(1.9, 1.8, 1.7)
  expect_equal(result$averaged, list(c(0.8, 0.8), c(1.8, 1.8)),
               tolerance = 1e-6)
  expect_identical(result$snapshots, 3L)
})

test_that("sequential_update = FALSE averages the weights before each update", {
  skip_if_no_kerasswa()
  result <- tfa_example(sequential_update = FALSE)
  expect_equal(result$trained, list(c(0.7, 0.7), c(1.7, 1.7)),
               tolerance = 1e-6)
  # mean(1.0, 0.9, 0.8) and mean(2.0, 1.9, 1.8)
  expect_equal(result$averaged, list(c(0.9, 0.9), c(1.9, 1.9)),
               tolerance = 1e-6)
})

test_that("a model compiled with optimizer_swa() trains and averages", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_swa_model(start_averaging = 5, average_period = 2)
  history <- model |> fit(data$x, data$y, batch_size = 8, epochs = 2,
                          verbose = 0)
  losses <- unlist(history$metrics$loss)
  expect_length(losses, 2L)
  expect_lt(losses[[2]], losses[[1]])
  # 64 samples in batches of 8 for 2 epochs: 16 updates, t = 0..15.
  expect_identical(as.integer(as_r_vector(model$optimizer$iterations)), 16L)
  expect_identical(swa_snapshot_count(model), 6L)
})

test_that("an inner optimizer given by name trains too", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_model(optimizer_swa("adam", average_period = 4))
  model |> fit(data$x, data$y, batch_size = 16, epochs = 3, verbose = 0)
  # 12 updates, snapshots at t = 0, 4, 8.
  expect_identical(swa_snapshot_count(model), 3L)
  expect_s3_class(model$optimizer$inner_optimizer,
                  "keras.src.optimizers.adam.Adam")
})

test_that("a learning-rate schedule on the wrapper drives the inner optimizer", {
  skip_if_no_kerasswa()
  schedule <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 1,
                                                       decay_rate = 0.5)
  swa <- optimizer_swa(optimizer_sgd(), learning_rate = schedule)
  model <- linear_model(swa)
  data <- linear_data(16)
  fit(model, data$x, data$y, batch_size = 8, epochs = 1, verbose = 0)
  # After 2 updates the schedule gives 0.1 * 0.5^2.
  expect_equal(as.numeric(op_convert_to_numpy(swa$inner_optimizer$learning_rate)),
               0.025, tolerance = 1e-7)
})
