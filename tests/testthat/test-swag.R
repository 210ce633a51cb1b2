# SWAG from R: optimizer_swag(), with_swag_sample() and swag_predict(), and
# their refusals of bad input.

library(keras3)

# Every weight sees the gradient 0.1 at every update (see
# test-averaging-modes.R): with SGD(1), one update per epoch takes the
# kernel from c(1, 1) to 0.9, 0.8, 0.7 and the bias from c(2, 2) to 1.9,
# 1.8, 1.7. With a snapshot at each, the SWAG mean is 0.8 and 1.8.
constant_gradient_swag_model <- function(updates = 3, ...) {
  model <- keras_model_sequential(input_shape = 1) |>
    layer_dense(2, kernel_initializer = initializer_ones(),
                bias_initializer = initializer_constant(2))
  model |> compile(
    optimizer = optimizer_swag(optimizer_sgd(1), average_period = 1, ...),
    loss = function(y_true, y_pred) 0.1 * op_sum(y_pred, axis = -1)
  )
  if (updates > 0)
    model |> fit(matrix(1), matrix(0, 1, 2), epochs = updates, batch_size = 1,
                 verbose = 0)
  model
}

kernel_and_bias <- function(model) {
  weights <- get_weights(model)
  list(kernel = as.vector(weights[[1]]), bias = as.vector(weights[[2]]))
}

# A linear model on 4 inputs trained with SWAG for 24 updates (64 samples,
# batches of 8, 3 epochs), snapshots from update 8 every 2: updates 8, 10,
# ..., 22, 8 snapshots.
linear_swag_model <- function(max_rank = 5) {
  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  model |> compile(
    optimizer = optimizer_swag(optimizer_sgd(0.05), start_averaging = 8,
                               average_period = 2, max_rank = max_rank),
    loss = "mse"
  )
  x <- matrix(seq(0, 1, length.out = 256), ncol = 4)
  model |> fit(x, x %*% c(1, -2, 3, 0.5), batch_size = 8, epochs = 3,
               shuffle = FALSE, verbose = 0)
  model
}

test_that("optimizer_swag() makes a SWAG optimizer with the arguments given", {
  skip_if_no_kerasswa()
  opt <- optimizer_swag(optimizer_sgd(0.1), start_averaging = 4,
                        average_period = 3, max_rank = 7, var_clamp = 1e-6,
                        sequential_update = FALSE, clipnorm = 2,
                        learning_rate = 0.2)
  expect_s3_class(opt, "kerasswa.swag.SWAG")
  expect_s3_class(opt, "kerasswa.swa.SWA")
  expect_identical(opt$start_averaging, 4L)
  expect_identical(opt$average_period, 3L)
  expect_identical(opt$max_rank, 7L)
  expect_identical(opt$var_clamp, 1e-6)
  expect_match(opt$name, "^swag(_[0-9]+)?$")
  expect_false(opt$sequential_update)
  expect_identical(opt$clipnorm, 2)
  expect_equal(as.numeric(op_convert_to_numpy(opt$learning_rate)), 0.2,
               tolerance = 1e-7)
  expect_identical(opt$averaging, "mean")

  manual <- optimizer_swag("sgd", start_averaging = NULL, max_rank = 0)
  expect_null(manual$start_averaging)
  expect_identical(manual$max_rank, 0L)
  expect_identical(manual$var_clamp, 1e-30)
})

test_that("the deviations held are the last max_rank snapshots", {
  skip_if_no_kerasswa()
  model <- linear_swag_model(max_rank = 5)
  expect_identical(swa_snapshot_count(model), 8L)
  expect_identical(model$optimizer$rank, 5L)  # min(8, 5)
  expect_identical(linear_swag_model(max_rank = 20)$optimizer$rank, 8L)
})

test_that("a sample with scale 0 is the SWA mean, worked out by hand", {
  skip_if_no_kerasswa()
  model <- constant_gradient_swag_model()
  for (covariance in c(TRUE, FALSE))
    expect_equal(
      with_swag_sample(model, kernel_and_bias(model), scale = 0,
                       covariance = covariance),
      list(kernel = c(0.8, 0.8), bias = c(1.8, 1.8)),
      tolerance = 1e-6
    )
  # The predictions of that model for x = 1, 2, 3: 0.8 * x + 1.8.
  expect_equal(
    swag_predict(model, matrix(c(1, 2, 3)), num_samples = 3, scale = 0),
    matrix(rep(c(2.6, 3.4, 4.2), 2), ncol = 2),
    tolerance = 1e-6
  )
})

test_that("a seeded sample is drawn again with the same seed", {
  skip_if_no_kerasswa()
  model <- constant_gradient_swag_model()
  first <- with_swag_sample(model, kernel_and_bias(model), seed = 3)
  expect_identical(with_swag_sample(model, kernel_and_bias(model), seed = 3),
                   first)
  other <- with_swag_sample(model, kernel_and_bias(model), seed = 4)
  expect_false(identical(other$kernel, first$kernel))
  # A sample, not the mean: the snapshots 0.9, 0.8 and 0.7 spread.
  expect_false(isTRUE(all.equal(first$kernel, c(0.8, 0.8), tolerance = 1e-4)))
  expect_true(all(is.finite(unlist(first))))
  # SWAG-diagonal, seeded, likewise.
  diagonal <- with_swag_sample(model, kernel_and_bias(model), seed = 3,
                               covariance = FALSE)
  expect_identical(with_swag_sample(model, kernel_and_bias(model), seed = 3,
                                    covariance = FALSE), diagonal)
  # A seed generator from keras3 is drawn from in turn.
  generator <- random_seed_generator(1)
  draws <- lapply(1:2, function(i)
    with_swag_sample(model, kernel_and_bias(model), seed = generator))
  expect_false(identical(draws[[1]], draws[[2]]))
})

test_that("with_swag_sample() restores the weights exactly, also on error", {
  skip_if_no_kerasswa()
  model <- constant_gradient_swag_model()
  before <- get_weights(model)
  seen <- with_swag_sample(model, get_weights(model), seed = 1)
  expect_false(identical(seen, before))
  expect_identical(get_weights(model), before)

  expect_error(
    with_swag_sample(model, {
      expect_false(identical(get_weights(model), before))
      stop("failed inside")
    }, seed = 1),
    "failed inside"
  )
  expect_identical(get_weights(model), before)
  # The training goes on from the training weights.
  model |> fit(matrix(1), matrix(0, 1, 2), epochs = 1, batch_size = 1,
               verbose = 0)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.6, 0.6), bias = c(1.6, 1.6)),
               tolerance = 1e-6)
})

test_that("swag_predict() returns an R array of the predictions' shape", {
  skip_if_no_kerasswa()
  model <- linear_swag_model()
  x <- matrix(seq(0, 1, length.out = 20), ncol = 4)
  before <- get_weights(model)
  predictions <- swag_predict(model, x, num_samples = 5, seed = 2)
  expect_true(is.array(predictions))
  expect_identical(dim(predictions), c(5L, 1L))
  expect_true(all(is.finite(predictions)))
  expect_identical(swag_predict(model, x, num_samples = 5, seed = 2),
                   predictions)
  expect_identical(get_weights(model), before)
  # The mean of samples scattered around the SWA model's predictions.
  swa_predictions <- with_swa_weights(model, predict(model, x, verbose = 0))
  expect_lt(max(abs(predictions - swa_predictions)), 0.5)

  # A vector is one input per sample; batch_size and bn_data are taken.
  expect_identical(
    dim(swag_predict(constant_gradient_swag_model(), c(1, 2, 3, 4),
                     num_samples = 2, batch_size = 2, seed = 1)),
    c(4L, 2L)
  )
})

test_that("swag_predict() recomputes batch-normalization statistics per sample", {
  skip_if_no_kerasswa()
  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 4) |>
    layer_batch_normalization() |>
    layer_dense(1)
  model |> compile(
    optimizer = optimizer_swag(optimizer_sgd(0.05), average_period = 2),
    loss = "mse"
  )
  x <- matrix(seq(0, 1, length.out = 128), ncol = 4)
  model |> fit(x, x %*% c(1, -2, 3, 0.5), batch_size = 8, verbose = 0)
  before <- get_weights(model)
  predictions <- swag_predict(model, x[1:6, ], num_samples = 3, bn_data = x,
                              bn_batch_size = 16, seed = 1)
  expect_identical(dim(predictions), c(6L, 1L))
  expect_true(all(is.finite(predictions)))
  # The statistics of the model are those of training again.
  expect_identical(get_weights(model), before)
})

test_that("an SWA model is refused, and SWAG works with the SWA tools", {
  skip_if_no_kerasswa()
  swa <- keras_model_sequential(input_shape = 1) |> layer_dense(2)
  swa |> compile(optimizer = optimizer_swa(optimizer_sgd(1)), loss = "mse")
  expect_error(with_swag_sample(swa, 1), class = "kerasswa_bad_argument",
               "^`model` must be a Keras model compiled with optimizer_swag\\(\\).*compiled with <Python object of class kerasswa\\.swa\\.SWA>$")
  expect_error(swag_predict(swa, matrix(1)), class = "kerasswa_bad_argument",
               "^`model` must be a Keras model compiled with optimizer_swag\\(\\)")

  model <- constant_gradient_swag_model(start_averaging = NULL)
  expect_identical(swa_snapshot_count(model), 0L)
  swa_take_snapshot(model)  # kernel 0.7, bias 1.7
  expect_identical(swa_snapshot_count(model), 1L)
  swa_assign_averages(model)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.7, 0.7), bias = c(1.7, 1.7)),
               tolerance = 1e-6)
})

test_that("sampling before there is anything to sample from is refused", {
  skip_if_no_kerasswa()
  untrained <- constant_gradient_swag_model(updates = 1, start_averaging = 5)
  before <- get_weights(untrained)
  expect_error(with_swag_sample(untrained, 1), class = "kerasswa_bad_argument",
               "^with_swag_sample\\(\\): the SWAG optimizer has taken no snapshot yet")
  expect_error(swag_predict(untrained, matrix(1)),
               class = "kerasswa_bad_argument",
               "^swag_predict\\(\\): the SWAG optimizer has taken no snapshot yet")
  # One snapshot, one deviation: the diagonal only.
  one <- constant_gradient_swag_model(updates = 1)
  expect_error(with_swag_sample(one, 1), class = "kerasswa_bad_argument",
               "^`covariance` must be FALSE while the optimizer holds fewer than 2 deviations \\(it holds 1, with max_rank = 20\\).*\nReceived: covariance = TRUE$")
  expect_error(swag_predict(one, matrix(1)), class = "kerasswa_bad_argument",
               "^`covariance` must be FALSE .*\nReceived: covariance = TRUE$")
  expect_no_error(with_swag_sample(one, 1, covariance = FALSE))
  expect_identical(get_weights(untrained), before)
})

test_that("bad input to optimizer_swag() is refused in R", {
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  # Refused before Python is touched.
  refused(optimizer_swag(NULL), "optimizer", "NULL")
  refused(optimizer_swag("sgd", max_rank = -1), "max_rank", "-1")
  refused(optimizer_swag("sgd", max_rank = 2.5), "max_rank", "2.5")
  refused(optimizer_swag("sgd", max_rank = NA), "max_rank", "NA")
  refused(optimizer_swag("sgd", max_rank = NULL), "max_rank", "NULL")
  refused(optimizer_swag("sgd", var_clamp = -1), "var_clamp", "-1")
  refused(optimizer_swag("sgd", var_clamp = NaN), "var_clamp", "NaN")
  refused(optimizer_swag("sgd", var_clamp = NULL), "var_clamp", "NULL")
  # The arguments it shares with optimizer_swa(), checked by the same code.
  refused(optimizer_swag("sgd", start_averaging = 2.5), "start_averaging",
          "2.5")
  refused(optimizer_swag("sgd", average_period = 0), "average_period", "0")
  refused(optimizer_swag("sgd", name = ""), "name", "\"\"")
  refused(optimizer_swag("sgd", sequential_update = NA), "sequential_update",
          "NA")
  refused(optimizer_swag("sgd", clipnorm = -1), "clipnorm", "-1")
  refused(optimizer_swag("sgd", decay = -0.1), "decay", "-0.1")
  refused(optimizer_swag("sgd", learning_rate = Inf), "learning_rate", "Inf")
  expect_error(optimizer_swag("sgd", clipnorm = 1, clipvalue = 1),
               class = "kerasswa_bad_argument",
               "^Give at most one of `clipnorm`, `clipvalue` and `global_clipnorm`.\nReceived: clipnorm = 1, clipvalue = 1$")
  expect_error(optimizer_swag("sgd", averaging = 0.9),
               class = "kerasswa_bad_argument",
               "^optimizer_swag\\(\\) fits its Gaussian to the plain mean .*takes no `averaging`.*\nReceived: averaging = 0.9$")
  expect_error(optimizer_swag("sgd", momentum = 0.9),
               class = "kerasswa_bad_argument",
               "^`\\.\\.\\.` takes only `sequential_update`, .*Received: momentum = 0.9$")
  expect_error(optimizer_swag("sgd", 0, 10, 20, 0.9),
               class = "kerasswa_bad_argument",
               "^`\\.\\.\\.` takes only .*Received: <unnamed> = 0.9$")
})

test_that("bad input to with_swag_sample() and swag_predict() is refused in R", {
  skip_if_no_kerasswa()
  model <- constant_gradient_swag_model()
  before <- get_weights(model)
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  refused(with_swag_sample(NULL, 1), "model", "NULL")
  refused(with_swag_sample(model, 1, seed = -1), "seed", "-1")
  refused(with_swag_sample(model, 1, seed = 1.5), "seed", "1.5")
  refused(with_swag_sample(model, 1, seed = "a"), "seed", "\"a\"")
  refused(with_swag_sample(model, 1, seed = NA), "seed", "NA")
  refused(with_swag_sample(model, 1, scale = -1), "scale", "-1")
  refused(with_swag_sample(model, 1, scale = NA), "scale", "NA")
  refused(with_swag_sample(model, 1, scale = NULL), "scale", "NULL")
  refused(with_swag_sample(model, 1, covariance = NA), "covariance", "NA")
  refused(with_swag_sample(model, 1, covariance = "yes"), "covariance",
          "\"yes\"")
  # `expr` is not evaluated when an argument is refused.
  expect_error(with_swag_sample(model, stop("evaluated"), scale = -1),
               class = "kerasswa_bad_argument")

  refused(swag_predict(matrix(1), matrix(1)), "model",
          "<double array of dimensions 1 x 1>")
  refused(swag_predict(model, numeric(0)), "x", "numeric\\(0\\)")
  refused(swag_predict(model, matrix(c(1, NaN))), "x",
          "<double array of dimensions 2 x 1>")
  refused(swag_predict(model, "1"), "x", "\"1\"")
  refused(swag_predict(model, matrix(1), num_samples = 0), "num_samples", "0")
  refused(swag_predict(model, matrix(1), num_samples = 2.5), "num_samples",
          "2.5")
  refused(swag_predict(model, matrix(1), scale = Inf), "scale", "Inf")
  refused(swag_predict(model, matrix(1), covariance = NA), "covariance", "NA")
  refused(swag_predict(model, matrix(1), bn_data = list()), "bn_data",
          "list\\(\\)")
  refused(swag_predict(model, matrix(1), batch_size = 0), "batch_size", "0")
  refused(swag_predict(model, matrix(1), seed = -2), "seed", "-2")
  refused(swag_predict(model, matrix(1), verbose = 2), "verbose", "2")
  refused(swag_predict(model, matrix(1), bn_batch_size = 1.5), "bn_batch_size",
          "1.5")
  expect_identical(get_weights(model), before)
})
