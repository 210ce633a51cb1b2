# The averaging modes from R: an exponential moving average at the snapshots
# (`averaging = <decay>`), manual snapshots (`start_averaging = NULL` with
# swa_take_snapshot()) and snapshots at epoch ends (callback_swa(start_epoch)),
# pinned by numbers worked out by hand.

library(keras3)

# A model whose every weight sees the gradient 0.1 at every update: one input
# fed the value 1, a dense layer of 2 units whose kernel starts at c(1, 1) and
# whose bias starts at c(2, 2), and the loss 0.1 * (sum of the outputs). With
# SGD(1) and one sample per batch, each update takes 0.1 off every weight, as
# in the worked example of tensorflow-addons' SWA test: the kernel goes
# 0.9, 0.8, 0.7, ... and the bias 1.9, 1.8, 1.7, ...
constant_gradient_model <- function(optimizer) {
  model <- keras_model_sequential(input_shape = 1) |>
    layer_dense(2, kernel_initializer = initializer_ones(),
                bias_initializer = initializer_constant(2))
  model |> compile(
    optimizer = optimizer,
    loss = function(y_true, y_pred) 0.1 * op_sum(y_pred, axis = -1)
  )
  model
}

# `updates` updates of the constant-gradient model, one per epoch.
train_updates <- function(model, updates, ...) {
  model |> fit(matrix(1), matrix(0, 1, 2), epochs = updates, batch_size = 1,
               verbose = 0, ...)
}

# The kernel and the bias of the constant-gradient model, as plain vectors.
kernel_and_bias <- function(model) {
  weights <- get_weights(model)
  list(kernel = as.vector(weights[[1]]), bias = as.vector(weights[[2]]))
}

test_that("averaging = 0.5 gives the moving average of the worked example", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = 0, average_period = 1,
                  averaging = 0.5)
  )
  expect_identical(model$optimizer$averaging, 0.5)
  train_updates(model, 3)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.7, 0.7), bias = c(1.7, 1.7)),
               tolerance = 1e-6)
  # Snapshots 0.9, 0.8, 0.7: the first is copied, then
  # 0.5 * 0.9 + 0.5 * 0.8 = 0.85, then 0.5 * 0.85 + 0.5 * 0.7 = 0.775;
  # the bias 1.775 likewise. (A buffer started at zero would give 0.6125.)
  swa_assign_averages(model)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.775, 0.775), bias = c(1.775, 1.775)),
               tolerance = 1e-6)
})

test_that("the plain mean stays the default", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), average_period = 1)
  )
  expect_identical(model$optimizer$averaging, "mean")
  train_updates(model, 3)
  swa_assign_averages(model)
  # (0.9 + 0.8 + 0.7) / 3 and (1.9 + 1.8 + 1.7) / 3.
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.8, 0.8), bias = c(1.8, 1.8)),
               tolerance = 1e-6)
})

test_that("start_averaging = NULL averages only the snapshots taken by hand", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = NULL)
  )
  expect_null(model$optimizer$start_averaging)
  train_updates(model, 1)
  expect_identical(swa_snapshot_count(model), 0L)
  returned <- expect_invisible(swa_take_snapshot(model))  # kernel 0.9
  expect_identical(returned, model)
  train_updates(model, 2)
  expect_identical(swa_snapshot_count(model), 1L)  # none automatic
  swa_take_snapshot(model)  # kernel 0.7
  expect_identical(swa_snapshot_count(model), 2L)

  # The mean of 0.9 and 0.7, and of 1.9 and 1.7; the model keeps training
  # with its own weights.
  expect_equal(with_swa_weights(model, kernel_and_bias(model)),
               list(kernel = c(0.8, 0.8), bias = c(1.8, 1.8)),
               tolerance = 1e-6)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.7, 0.7), bias = c(1.7, 1.7)),
               tolerance = 1e-6)
})

test_that("an optimizer with automatic snapshots takes a manual one too", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = 1, average_period = 10)
  )
  train_updates(model, 2)  # one automatic snapshot: update 1, kernel 0.8
  swa_take_snapshot(model)  # kernel 0.8 again
  train_updates(model, 1)
  swa_take_snapshot(model)  # kernel 0.7
  expect_identical(swa_snapshot_count(model), 3L)
  # (0.8 + 0.8 + 0.7) / 3 = 0.7667 and (1.8 + 1.8 + 1.7) / 3 = 1.7667.
  expect_equal(with_swa_weights(model, kernel_and_bias(model)),
               list(kernel = rep(2.3 / 3, 2), bias = rep(5.3 / 3, 2)),
               tolerance = 1e-6)
})

test_that("with manual snapshots and none taken, the warning says how to take one", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = NULL)
  )
  train_updates(model, 2)
  expect_warning(
    swa_assign_averages(model), class = "kerasswa_no_snapshot",
    "`start_averaging` is NULL: snapshots are taken by swa_take_snapshot\\(\\)"
  )
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.8, 0.8), bias = c(1.8, 1.8)),
               tolerance = 1e-6)
})

test_that("callback_swa(start_epoch) takes a snapshot at the end of each epoch from it", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = NULL)
  )
  callback <- callback_swa(start_epoch = 2)
  expect_identical(callback$start_epoch, 2L)
  # One update per epoch: the weights at the ends of epochs 2 and 3 are
  # 0.8 and 0.7 (kernel), 1.8 and 1.7 (bias); the callback finishes fit()
  # with their mean.
  train_updates(model, 3, callbacks = list(callback))
  expect_identical(swa_snapshot_count(model), 2L)
  expect_equal(kernel_and_bias(model),
               list(kernel = c(0.75, 0.75), bias = c(1.75, 1.75)),
               tolerance = 1e-6)
})

test_that("callback_swa(start_epoch) refuses an optimizer with automatic snapshots", {
  skip_if_no_kerasswa()
  model <- constant_gradient_model(optimizer_swa(optimizer_sgd(1)))
  expect_error(
    train_updates(model, 1, callbacks = list(callback_swa(start_epoch = 1))),
    "^ValueError: .*start_epoch=1.*build it with `start_averaging=None`"
  )
  expect_equal(kernel_and_bias(model),
               list(kernel = c(1, 1), bias = c(2, 2)))
})

test_that("averaging and the manual mode are kept when the model is saved", {
  skip_if_no_kerasswa()
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  model |> compile(
    optimizer = optimizer_swa(optimizer_sgd(0.05), start_averaging = NULL,
                              averaging = 0.9),
    loss = "mse"
  )
  x <- matrix(seq(0, 1, length.out = 32), ncol = 4)
  model |> fit(x, x %*% c(1, -2, 3, 0.5), batch_size = 4, verbose = 0)
  swa_take_snapshot(model)
  path <- tempfile(fileext = ".keras")
  on.exit(unlink(path), add = TRUE)
  save_model(model, path)
  loaded <- load_model(path)
  expect_null(loaded$optimizer$start_averaging)
  expect_identical(loaded$optimizer$averaging, 0.9)
  expect_identical(swa_snapshot_count(loaded), 1L)
})

test_that("bad averaging modes, manual starts and start epochs are refused in R", {
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  # No Python is needed: each is refused before Python is touched.
  refused(optimizer_swa("sgd", averaging = "median"), "averaging",
          "\"median\"")
  refused(optimizer_swa("sgd", averaging = 0), "averaging", "0")
  refused(optimizer_swa("sgd", averaging = 1), "averaging", "1")
  refused(optimizer_swa("sgd", averaging = -0.5), "averaging", "-0.5")
  refused(optimizer_swa("sgd", averaging = NA), "averaging", "NA")
  refused(optimizer_swa("sgd", averaging = NaN), "averaging", "NaN")
  refused(optimizer_swa("sgd", averaging = TRUE), "averaging", "TRUE")
  refused(optimizer_swa("sgd", averaging = "0.5"), "averaging", "\"0.5\"")
  refused(optimizer_swa("sgd", averaging = c(0.5, 0.9)), "averaging",
          "c\\(0.5, 0.9\\)")
  refused(optimizer_swa("sgd", averaging = NULL), "averaging", "NULL")
  expect_error(optimizer_swa("sgd", averaging = 1.5),
               "\"mean\", a single number in \\(0, 1\\).*averaging_ema\\(\\)")

  # start_averaging may be NULL now, and the message says so.
  refused(optimizer_swa("sgd", start_averaging = -1), "start_averaging", "-1")
  refused(optimizer_swa("sgd", start_averaging = 2.5), "start_averaging",
          "2.5")
  refused(optimizer_swa("sgd", start_averaging = NA), "start_averaging", "NA")
  expect_error(optimizer_swa("sgd", start_averaging = "none"),
               "^`start_averaging` must be NULL or a single whole number >= 0")

  refused(callback_swa(start_epoch = 0), "start_epoch", "0")
  refused(callback_swa(start_epoch = 1.5), "start_epoch", "1.5")
  refused(callback_swa(start_epoch = NA), "start_epoch", "NA")
  refused(callback_swa(start_epoch = "1"), "start_epoch", "\"1\"")
  expect_error(callback_swa(start_epoch = -3),
               "^`start_epoch` must be NULL or a single whole number >= 1")
})

test_that("swa_take_snapshot() needs a model trained with an SWA optimizer", {
  skip_if_no_kerasswa()
  expect_error(swa_take_snapshot(NULL), class = "kerasswa_bad_argument",
               "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*Received: model = NULL$")
  uncompiled <- keras_model_sequential(input_shape = 1) |> layer_dense(2)
  expect_error(swa_take_snapshot(uncompiled), class = "kerasswa_bad_argument",
               "^`model` must be .*\\(not compiled\\)$")
  plain <- constant_gradient_model(optimizer_sgd(1))
  expect_error(swa_take_snapshot(plain), class = "kerasswa_bad_argument",
               "^`model` must be .*compiled with <Python object of class keras\\..*SGD>$")
  # Compiled, but its optimizer has not met the weights yet.
  untrained <- constant_gradient_model(
    optimizer_swa(optimizer_sgd(1), start_averaging = NULL)
  )
  expect_error(swa_take_snapshot(untrained),
               "^ValueError: `take_snapshot` needs a built optimizer")
})
