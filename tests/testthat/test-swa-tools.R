# A model trained one batch at a time, with the weights recorded after every
# update, so that the averages can be worked out in R.
train_recording <- function(updates, start_averaging, average_period) {
  data <- linear_data(n = 8L * updates)
  model <- linear_swa_model(start_averaging = start_averaging,
                            average_period = average_period)
  recorded <- vector("list", updates)
  for (update in seq_len(updates)) {
    rows <- (update - 1L) * 8L + 1:8
    model |> train_on_batch(data$x[rows, , drop = FALSE],
                            data$y[rows, , drop = FALSE])
    recorded[[update]] <- get_weights(model)
  }
  list(model = model, data = data, recorded = recorded)
}

mean_of_weights <- function(recorded) {
  lapply(seq_along(recorded[[1]]), function(i)
    Reduce(`+`, lapply(recorded, `[[`, i)) / length(recorded))
}

test_that("the averages are the mean of the snapshots, worked out in R", {
  skip_if_no_kerasswa()
  run <- train_recording(updates = 10L, start_averaging = 2, average_period = 3)
  # Snapshots at t = 2, 5, 8: after the 3rd, 6th and 9th updates.
  expected <- mean_of_weights(run$recorded[c(3L, 6L, 9L)])
  expect_identical(swa_snapshot_count(run$model), 3L)

  training <- get_weights(run$model)
  averaged <- with_swa_weights(run$model, get_weights(run$model))
  expect_equal(averaged, expected, tolerance = 1e-6)
  # Swapped back bit for bit.
  expect_identical(get_weights(run$model), training)
  expect_identical(training, run$recorded[[10L]])

  expect_invisible(swa_assign_averages(run$model))
  expect_equal(get_weights(run$model), expected, tolerance = 1e-6)
})

test_that("swa_evaluate() evaluates the averaged model and restores the weights", {
  skip_if_no_kerasswa()
  run <- train_recording(updates = 10L, start_averaging = 2, average_period = 3)
  averaged <- mean_of_weights(run$recorded[c(3L, 6L, 9L)])
  x <- run$data$x
  y <- run$data$y
  kernel <- averaged[[1]]
  bias <- averaged[[2]]
  expected_mse <- mean((sweep(x %*% kernel, 2L, bias, `+`) - y)^2)

  training <- get_weights(run$model)
  scores <- swa_evaluate(run$model, x, y, batch_size = 80, verbose = 0)
  expect_named(scores, "loss")
  expect_equal(scores$loss, expected_mse, tolerance = 1e-5)
  expect_identical(get_weights(run$model), training)
})

test_that("with_swa_weights() restores the training weights when expr fails", {
  skip_if_no_kerasswa()
  run <- train_recording(updates = 4L, start_averaging = 0, average_period = 1)
  training <- get_weights(run$model)
  expect_error(with_swa_weights(run$model, stop("evaluation failed")),
               "evaluation failed")
  expect_identical(get_weights(run$model), training)
})

test_that("swa_snapshot_count() counts snapshots as worked out by hand", {
  skip_if_no_kerasswa()
  count_after <- function(updates, start_averaging, average_period) {
    swa <- optimizer_swa(optimizer_sgd(learning_rate = 0.1),
                         start_averaging = start_averaging,
                         average_period = average_period)
    weight <- list(new_variable(c(1, 1)))
    gradient <- list(op_full(2, 0.1))
    for (update in seq_len(updates))
      swa$apply(gradient, weight)
    swa_snapshot_count(swa)
  }
  expect_identical(count_after(0, 0, 1), 0L)     # not even built
  expect_identical(count_after(16, 5, 2), 6L)    # t = 5, 7, 9, 11, 13, 15
  expect_identical(count_after(16, 0, 10), 2L)   # t = 0, 10
  expect_identical(count_after(16, 3, 5), 3L)    # t = 3, 8, 13
  expect_identical(count_after(16, 15, 1), 1L)   # t = 15
  expect_identical(count_after(16, 16, 1), 0L)   # first at t = 16
  expect_identical(count_after(7, 0, 1), 7L)     # t = 0, ..., 6
})

test_that("before the first snapshot the helpers warn and change nothing", {
  skip_if_no_kerasswa()
  data <- linear_data()
  model <- linear_swa_model(start_averaging = 100)
  expect_warning(swa_assign_averages(model), class = "kerasswa_no_snapshot",
                 "no snapshot of the weights has been averaged yet \\(the first is taken at update 100")

  model |> fit(data$x, data$y, batch_size = 8, epochs = 1, verbose = 0)
  training <- get_weights(model)
  expect_warning(swa_assign_averages(model), class = "kerasswa_no_snapshot")
  expect_identical(get_weights(model), training)
  expect_warning(
    weights <- with_swa_weights(model, get_weights(model)),
    "it runs with the training weights"
  )
  expect_identical(weights, training)
  expect_warning(swa_evaluate(model, data$x, data$y, verbose = 0),
                 class = "kerasswa_no_snapshot")
})

test_that("non-trainable variables (batch-norm statistics) are left alone", {
  skip_if_no_kerasswa()
  model <- batch_norm_model(optimizer_swa("sgd", average_period = 1))
  data <- linear_data()
  model |> fit(data$x, data$y, batch_size = 16, epochs = 1, verbose = 0)
  statistics <- get_weights(model, trainable = FALSE)
  expect_length(statistics, 2L)  # moving mean and moving variance

  swa_assign_averages(model)
  expect_identical(get_weights(model, trainable = FALSE), statistics)
})

test_that("the helpers refuse models without an SWA optimizer, naming them", {
  skip_if_no_kerasswa()
  uncompiled <- linear_model()
  expect_error(swa_assign_averages(uncompiled),
               "^`model` must be a Keras model compiled with optimizer_swa\\(\\).\nReceived: model = <Python object of class keras.src.models.sequential.Sequential> \\(not compiled\\)",
               class = "kerasswa_bad_argument")

  sgd_model <- linear_model("sgd")
  for (helper in list(swa_assign_averages, swa_evaluate,
                      function(model) with_swa_weights(model, 1)))
    expect_error(helper(sgd_model),
                 "compiled with <Python object of class keras.src.optimizers.sgd.SGD>",
                 class = "kerasswa_bad_argument")

  expect_error(swa_assign_averages(1:3),
               "Received: model = 1:3", fixed = TRUE)
  expect_error(swa_snapshot_count("sgd"),
               "^`object` must be an optimizer made by optimizer_swa\\(\\), or a Keras model compiled with one")
  expect_error(swa_snapshot_count(optimizer_sgd()),
               "^`object` must be", class = "kerasswa_bad_argument")
})

test_that("an SWA optimizer inside a loss-scale optimizer is found", {
  skip_if_no_kerasswa()
  swa <- optimizer_swa("sgd", average_period = 1)
  model <- linear_model(optimizer_loss_scale(swa))
  data <- linear_data()
  model |> fit(data$x, data$y, batch_size = 32, epochs = 1, verbose = 0)
  expect_identical(swa_snapshot_count(model), 2L)
})
