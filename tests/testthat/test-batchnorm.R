# Inputs whose columns differ in location and spread, so that a wrong
# statistic cannot pass for a right one.
spread_inputs <- function(n) {
  set.seed(2)
  x <- matrix(rnorm(4L * n), ncol = 4L)
  sweep(sweep(x, 2L, c(1, 10, 0.1, 3), `*`), 2L, c(0, -5, 2, 0.5), `+`)
}

test_that("swa_update_bn() sets the statistics of a pass over the data", {
  skip_if_no_kerasswa()
  x <- spread_inputs(10L)
  model <- batch_norm_model()
  weights <- get_weights(model)[c(1, 2, 5, 6)]  # gamma, beta, kernel, bias

  # Batches of 4, 4 and 2 rows.
  expect_invisible(result <- swa_update_bn(model, x, batch_size = 4))
  expect_true(reticulate::py_id(result) == reticulate::py_id(model))
  expected <- pass_statistics(x, batch_size = 4L)
  expect_equal(batch_norm_statistics(model), expected, tolerance = 1e-5)
  # The mean is that of all the data; the variance is not var(x).
  expect_equal(expected$mean, unname(colMeans(x)))
  expect_false(isTRUE(all.equal(expected$variance,
                                apply(x, 2L, var) * 9 / 10)))

  # Nothing else changes, not even the layer's momentum.
  expect_identical(get_weights(model)[c(1, 2, 5, 6)], weights)
  expect_equal(model$layers[[1]]$momentum, 0.99)
})

test_that("steps limits the pass to the first batches", {
  skip_if_no_kerasswa()
  x <- spread_inputs(10L)
  model <- batch_norm_model()
  swa_update_bn(model, x, batch_size = 3, steps = 2)
  expect_equal(batch_norm_statistics(model),
               pass_statistics(x[1:6, ], batch_size = 3L), tolerance = 1e-5)
})

test_that("the default batch size is 32, and Python data is taken too", {
  skip_if_no_kerasswa()
  x <- spread_inputs(80L)  # batches of 32, 32 and 16
  model <- batch_norm_model()
  swa_update_bn(model, reticulate::np_array(x, dtype = "float32"))
  expect_equal(batch_norm_statistics(model),
               pass_statistics(x, batch_size = 32L), tolerance = 1e-5)
})

test_that("a model with several inputs takes a list of arrays", {
  skip_if_no_kerasswa()
  left <- keras_input(shape = 4)
  right <- keras_input(shape = 2)
  layer <- layer_batch_normalization()
  output <- layer_concatenate(layer(left), right) |> layer_dense(1)
  model <- keras_model(inputs = list(left, right), outputs = output)
  x <- spread_inputs(12L)
  swa_update_bn(model, list(x, matrix(0, 12, 2)), batch_size = 5)
  expected <- pass_statistics(x, batch_size = 5L)
  expect_equal(as_r_vector(layer$moving_mean), expected$mean, tolerance = 1e-5)
  expect_equal(as_r_vector(layer$moving_variance), expected$variance,
               tolerance = 1e-5)
})

test_that("a model without batch normalization gets an R warning", {
  skip_if_no_kerasswa()
  model <- linear_swa_model()
  weights <- get_weights(model)
  expect_warning(swa_update_bn(model, linear_data()$x),
                 "`update_bn` did nothing: model '.*' has no trainable BatchNormalization layer",
                 class = "kerasswa_python_warning")
  expect_identical(get_weights(model), weights)
})

test_that("what only Python can judge is refused by Python", {
  skip_if_no_kerasswa()
  unbuilt <- keras_model_sequential() |> layer_batch_normalization()
  expect_error(swa_update_bn(unbuilt, spread_inputs(4L)),
               "`update_bn` needs a built model")
})
