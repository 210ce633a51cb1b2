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

test_that("the defaults are those of tfa.optimizers.SWA, but for the name", {
  skip_if_no_kerasswa()
  swa <- optimizer_swa("sgd")
  expect_identical(swa$start_averaging, 0L)
  expect_identical(swa$average_period, 10L)
  # A name of its own, as Keras gives its optimizers (tfa's was "SWA").
  expect_match(swa$name, "^swa(_[0-9]+)?$")
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

test_that("two optimizer_swa() get distinct names, and a model holding both saves", {
  skip_if_no_kerasswa()
  first <- optimizer_swa("sgd")
  second <- optimizer_swa("sgd")
  expect_false(identical(first$name, second$name))
  expect_match(c(first$name, second$name), "^swa(_[0-9]+)?$")
  expect_match(optimizer_swag("sgd")$name, "^swag(_[0-9]+)?$")

  # A GAN's shape: two sub-models, each trained by its own SWA optimizer.
  gan_class <- new_model_class(
    "TwoOptimizerModel",
    initialize = function(...) {
      super$initialize(...)
      self$generator <- keras_model_sequential(input_shape = 2) |>
        layer_dense(2)
      self$discriminator <- keras_model_sequential(input_shape = 2) |>
        layer_dense(1)
      self$g_optimizer <- optimizer_swa(optimizer_adam(0.1), average_period = 1)
      self$d_optimizer <- optimizer_swa(optimizer_adam(0.1), average_period = 1)
      self$g_optimizer$build(self$generator$trainable_variables)
      self$d_optimizer$build(self$discriminator$trainable_variables)
    },
    call = function(x) self$discriminator(self$generator(x))
  )
  make_gan <- function() {
    gan <- gan_class()
    gan(op_zeros(c(1, 2)))
    gan
  }
  gan <- make_gan()
  for (part in c("generator", "discriminator")) {
    variables <- gan[[part]]$trainable_variables
    optimizer <- gan[[if (part == "generator") "g_optimizer" else "d_optimizer"]]
    for (step in 1:2)
      optimizer$apply(lapply(variables, function(v) op_full(v$shape, 0.1 * step)),
                      variables)
  }
  path <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(path), add = TRUE)
  save_model_weights(gan, path)
  restored <- make_gan()
  load_model_weights(restored, path)
  for (name in c("g_optimizer", "d_optimizer")) {
    expect_identical(swa_snapshot_count(restored[[name]]), 2L)
    expect_equal(lapply(restored[[name]]$variables, as_r_vector),
                 lapply(gan[[name]]$variables, as_r_vector))
  }
})

test_that("a learning-rate function of no arguments is called with none", {
  skip_if_no_kerasswa()
  calls <- 0
  rate <- function() {
    calls <<- calls + 1
    0.5
  }
  weights <- list(new_variable(c(1, 1)))
  swa <- optimizer_swa(optimizer_sgd(0.01), learning_rate = rate)
  swa$apply(list(op_full(2, 0.1)), weights)
  expect_equal(as_r_vector(weights[[1]]), c(0.95, 0.95), tolerance = 1e-6)
  expect_gt(calls, 0)
  # And in fit(): 1 - 0.5 * 2 * (2 - 0) on the one weight of each input.
  model <- keras_model_sequential(input_shape = 2) |>
    layer_dense(1, kernel_initializer = "ones", use_bias = FALSE)
  model |> compile(optimizer = optimizer_swa(optimizer_sgd(0.01),
                                             learning_rate = function() 0.5),
                   loss = "mse")
  model |> fit(matrix(1, 4, 2), matrix(0, 4, 1), batch_size = 4, verbose = 0)
  expect_equal(as.vector(get_weights(model)[[1]]), c(-1, -1))
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
