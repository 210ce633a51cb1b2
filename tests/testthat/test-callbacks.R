# The averages an SWA optimizer keeps, as R arrays in the order of the
# model's trainable weights.
optimizer_averages <- function(model) {
  lapply(model$optimizer$average_variables, function(average)
    as.array(op_convert_to_numpy(average)))
}

trainable_weights <- function(model) get_weights(model, trainable = TRUE)

test_that("after fit() the model holds the averages; val_swa_ scores them", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_swa_model(start_averaging = 8, average_period = 2)
  history <- model |> fit(
    data$x, data$y, batch_size = 8, epochs = 3, shuffle = FALSE,
    verbose = 0, callbacks = list(callback_swa(
      validation_data = list(data$x, data$y)
    ))
  )
  # 3 epochs of 8 updates, t = 0..23: snapshots at t = 8, 10, ..., 22.
  expect_identical(swa_snapshot_count(model), 8L)
  averages <- optimizer_averages(model)
  expect_identical(trainable_weights(model), averages)

  # NaN for epoch 1, which ends before the first snapshot (t = 8).
  val_swa_loss <- unlist(history$metrics$val_swa_loss)
  expect_length(val_swa_loss, 3L)
  expect_true(is.nan(val_swa_loss[[1]]))
  expect_false(anyNA(val_swa_loss[2:3]))
  # The last one is the mean squared error of the averaged linear model.
  kernel <- averages[[1]]
  bias <- averages[[2]]
  expected_mse <- mean((data$x %*% kernel + bias[[1]] - data$y)^2)
  expect_equal(val_swa_loss[[3]], expected_mse, tolerance = 1e-5)
  expect_equal(evaluate(model, data$x, data$y, verbose = 0)[["loss"]],
               val_swa_loss[[3]], tolerance = 1e-6)
})

test_that("bn_data makes the batch-norm statistics those of a fresh pass", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- batch_norm_model(optimizer_swa("sgd", start_averaging = 2,
                                          average_period = 2))
  model |> fit(data$x, data$y, batch_size = 8, epochs = 1, verbose = 0,
               callbacks = list(callback_swa(bn_data = data$x,
                                             bn_batch_size = 16)))
  expect_identical(trainable_weights(model), optimizer_averages(model))
  expect_equal(batch_norm_statistics(model),
               pass_statistics(data$x, batch_size = 16L), tolerance = 1e-5)
})

test_that("average_non_trainable averages the statistics over the snapshots", {
  skip_if_no_kerasswa()
  data <- linear_data(n = 16L)
  model <- batch_norm_model(optimizer_swa("sgd", start_averaging = 0,
                                          average_period = 1),
                            momentum = 0.9)
  model |> fit(data$x, data$y, batch_size = 8, epochs = 1, shuffle = FALSE,
               verbose = 0,
               callbacks = list(callback_swa(average_non_trainable = TRUE)))
  # Two snapshots, one after each batch. The moving statistics start at 0
  # and 1 and take 10% of each batch's mean and (biased) variance.
  first <- pass_statistics(data$x[1:8, ], batch_size = 8L)
  second <- pass_statistics(data$x[9:16, ], batch_size = 8L)
  mean_1 <- 0.1 * first$mean
  mean_2 <- 0.9 * mean_1 + 0.1 * second$mean
  variance_1 <- 0.9 + 0.1 * first$variance
  variance_2 <- 0.9 * variance_1 + 0.1 * second$variance
  expect_equal(batch_norm_statistics(model),
               list(mean = (mean_1 + mean_2) / 2,
                    variance = (variance_1 + variance_2) / 2),
               tolerance = 1e-5)
  expect_identical(trainable_weights(model), optimizer_averages(model))
})

test_that("finish_after_epoch finishes and stops training after that epoch", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_swa_model(start_averaging = 0, average_period = 1)
  history <- model |> fit(data$x, data$y, batch_size = 8, epochs = 5,
                          verbose = 0,
                          callbacks = list(callback_swa(finish_after_epoch = 2)))
  expect_length(history$metrics$loss, 2L)
  expect_identical(swa_snapshot_count(model), 16L)
  expect_identical(trainable_weights(model), optimizer_averages(model))
})

test_that("several fit() calls, each with a new callback, continue one trajectory", {
  skip_if_no_kerasswa()
  data <- linear_data()
  train <- function(epochs) {
    model <- linear_swa_model(start_averaging = 4, average_period = 3)
    for (n in epochs)
      history <- model |> fit(data$x, data$y, batch_size = 8, epochs = n,
                              shuffle = FALSE, verbose = 0,
                              callbacks = list(callback_swa(
                                validation_data = list(data$x, data$y))))
    list(model = model, history = history)
  }
  once <- train(3)
  in_parts <- train(c(2, 1))
  expect_identical(swa_snapshot_count(in_parts$model), 7L)  # t = 4, 7, ..., 22
  expect_equal(trainable_weights(in_parts$model), trainable_weights(once$model),
               tolerance = 1e-6)
  expect_equal(in_parts$history$metrics$val_swa_loss[[1]],
               once$history$metrics$val_swa_loss[[3]], tolerance = 1e-6)
})

test_that("validation_data reaches Python as a tuple", {
  skip_if_no_kerasswa()
  data <- linear_data(n = 4L)
  weights <- c(1, 2, 3, 4)
  callback <- callback_swa(validation_data = list(data$x, data$y, weights),
                           validation_batch_size = 2)
  validation_data <- reticulate::py_get_attr(callback, "validation_data")
  expect_s3_class(validation_data, "python.builtin.tuple")
  expect_identical(reticulate::py_len(validation_data), 3L)
  # The R vector of weights went as a 1-d array, not as a Python list.
  expect_identical(reticulate::py_to_r(validation_data)[[3]],
                   as.array(weights))
  expect_identical(callback$validation_batch_size, 2L)

  given <- reticulate::tuple(data$x, data$y)
  callback <- callback_swa(validation_data = given)
  expect_true(reticulate::py_id(reticulate::py_get_attr(
    callback, "validation_data")) == reticulate::py_id(given))
})

test_that("the arguments reach Python with Python's types", {
  skip_if_no_kerasswa()
  callback <- callback_swa()
  expect_s3_class(callback, "kerasswa.callbacks.SWACallback")
  expect_null(callback$bn_data)
  expect_identical(callback$bn_batch_size, 32L)
  expect_null(callback$bn_steps)
  expect_null(callback$validation_batch_size)
  expect_null(callback$finish_after_epoch)
  expect_false(callback$average_non_trainable)
  expect_identical(callback$verbose, 0L)

  callback <- callback_swa(bn_data = 1:3, bn_batch_size = 2, bn_steps = 1,
                           finish_after_epoch = 3, verbose = TRUE)
  expect_identical(callback$bn_data, as.array(1:3))
  expect_identical(callback$bn_steps, 1L)
  expect_identical(callback$finish_after_epoch, 3L)
  expect_identical(callback$verbose, 1L)
})

test_that("a model compiled without SWA is refused by Python at fit()", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_model("sgd")
  expect_error(
    fit(model, data$x, data$y, verbose = 0, callbacks = list(callback_swa())),
    "SWACallback needs a model compiled with a kerasswa.SWA optimizer"
  )
})

# The moving mean and variance of a batch_norm_model() after each of `steps`
# steps over consecutive batches of `x` (Keras: moving * momentum +
# batch moment * (1 - momentum), from 0 and 1, biased batch variance).
moving_statistics <- function(x, batch_size, steps, momentum) {
  per_epoch <- nrow(x) %/% batch_size
  mean <- rep(0, ncol(x))
  variance <- rep(1, ncol(x))
  lapply(seq_len(steps), function(step) {
    rows <- ((step - 1L) %% per_epoch) * batch_size + seq_len(batch_size)
    moments <- pass_statistics(x[rows, , drop = FALSE], batch_size)
    mean <<- mean * momentum + moments$mean * (1 - momentum)
    variance <<- variance * momentum + moments$variance * (1 - momentum)
    list(mean = mean, variance = variance)
  })
}

# The weights of snapshots 1..t in averaging_ema(decay, power = power):
# snapshot tau enters with 1 - decay_(tau - 1) (a copy first) and is then
# multiplied by every later decay_n = min(decay, 1 - (1 + n)^-power).
ema_snapshot_weights <- function(t, decay, power) {
  decays <- c(0, pmin(decay, 1 - (1 + seq_len(t - 1))^-power))
  vapply(seq_len(t), function(tau)
    (1 - decays[[tau]]) * prod(decays[-seq_len(tau)]), numeric(1))
}

statistics_swa_model <- function() {
  batch_norm_model(optimizer_swa(optimizer_adam(0.01), start_averaging = 1,
                                 average_period = 2,
                                 averaging = averaging_ema(0.8, power = 0.75)),
                   momentum = 0.7)
}

test_that("average_non_trainable averages the statistics by the weights' rule", {
  skip_if_no_kerasswa()
  data <- linear_data(n = 32L)
  model <- statistics_swa_model()
  model |> fit(data$x, data$y, batch_size = 8, epochs = 3, shuffle = FALSE,
               verbose = 0,
               callbacks = list(callback_swa(average_non_trainable = TRUE)))
  # 12 updates, snapshots at t = 1, 3, ..., 11: the statistics after steps
  # 2, 4, ..., 12 (counted from 1), weighted as the EMA weighs snapshots.
  history <- moving_statistics(data$x, 8L, 12L, momentum = 0.7)[c(2, 4, 6, 8, 10, 12)]
  weights <- ema_snapshot_weights(6L, decay = 0.8, power = 0.75)
  expect_equal(sum(weights), 1)
  expected <- lapply(c(mean = "mean", variance = "variance"), function(k)
    Reduce(`+`, Map(function(w, s) w * s[[k]], weights, history)))
  expect_equal(swa_snapshot_count(model), 6L)
  expect_equal(batch_norm_statistics(model), expected, tolerance = 1e-5)
})

test_that("the averaged statistics are saved with the model and a resumed fit() continues them", {
  skip_if_no_kerasswa()
  data <- linear_data(n = 32L)
  train <- function(model, epochs, initial_epoch = 1, callbacks = list())
    model |> fit(data$x, data$y, batch_size = 8, epochs = epochs,
                 initial_epoch = initial_epoch, shuffle = FALSE, verbose = 0,
                 callbacks = c(list(callback_swa(average_non_trainable = TRUE)),
                               callbacks))
  whole <- statistics_swa_model()
  train(whole, 4)

  # Saved at the end of epoch 2 by a checkpoint: the training state, with
  # the optimizer and its averages of the statistics.
  file <- tempfile(fileext = ".keras")
  on.exit(unlink(file))
  first <- statistics_swa_model()
  train(first, 2, callbacks = list(callback_model_checkpoint(file)))
  resumed <- load_model(file)
  train(resumed, 4, initial_epoch = 3)  # keras3 counts epochs from 1

  expect_identical(swa_snapshot_count(resumed), 8L)
  expect_identical(get_weights(resumed), get_weights(whole))
  expect_identical(lapply(resumed$optimizer$variables, as_r_vector),
                   lapply(whole$optimizer$variables, as_r_vector))
})

test_that("average_non_trainable refuses steps_per_execution > 1 when fit() starts", {
  skip_if_no_kerasswa()
  skip_if(keras3::config_backend() == "torch")  # refused by Keras itself
  data <- linear_data(n = 16L)
  model <- batch_norm_model()
  model |> compile(optimizer = optimizer_swa("sgd"), loss = "mse",
                   steps_per_execution = 2)
  expect_error(
    model |> fit(data$x, data$y, batch_size = 8, verbose = 0,
                 callbacks = list(callback_swa(average_non_trainable = TRUE))),
    "steps_per_execution=2"
  )
})
