# The full SWA recipe end to end, from R: a small CNN with batch
# normalization on scikit-learn's digits, trained with optimizer_swa(),
# learning_rate_schedule_swa() and callback_swa(). The R twin of
# tests/python/test_recipe.py.

# 8 x 8 x 1 images scaled to [0, 1] and their digits; a fixed-seed split of
# 1200 training images, the other 597 for testing.
digits_split <- function() {
  digits <- reticulate::import("sklearn.datasets")$load_digits()
  images <- digits$images / 16
  x <- array(images, dim = c(dim(images), 1))
  y <- as.integer(digits$target)
  set.seed(0)
  train <- sample(nrow(x), 1200)
  list(x_train = x[train, , , , drop = FALSE], y_train = y[train],
       x_test = x[-train, , , , drop = FALSE], y_test = y[-train])
}

digits_cnn <- function() {
  keras_model_sequential(input_shape = c(8, 8, 1)) |>
    layer_conv_2d(8, 3, use_bias = FALSE) |>
    layer_batch_normalization() |>
    layer_activation_relu() |>
    layer_flatten() |>
    layer_dense(10, activation = "softmax")
}

test_that("the full SWA recipe gives the averaged model, batch norm included", {
  skip_if_no_kerasswa()
  skip_if_not(reticulate::py_module_available("sklearn"),
              "scikit-learn is not available")
  data <- digits_split()
  steps_per_epoch <- 1200 / 40
  start <- 3 * steps_per_epoch

  set_random_seed(0)
  schedule <- learning_rate_schedule_swa(0.1, 0.03, start_averaging = start,
                                         anneal_steps = steps_per_epoch)
  optimizer <- optimizer_swa(
    optimizer_sgd(learning_rate = schedule, momentum = 0.9),
    start_averaging = start, average_period = 5
  )
  model <- digits_cnn()
  model |> compile(optimizer = optimizer,
                   loss = "sparse_categorical_crossentropy",
                   metrics = "accuracy")
  history <- model |> fit(
    data$x_train, data$y_train, batch_size = 40, epochs = 6, verbose = 0,
    callbacks = list(callback_swa(
      bn_data = data$x_train,
      validation_data = list(data$x_test, data$y_test)
    ))
  )
  # 180 updates; snapshots at t = 90, 95, ..., 175.
  expect_identical(swa_snapshot_count(model), 18L)

  # The model holds the averages ...
  averages <- lapply(optimizer$average_variables, function(average)
    as.array(op_convert_to_numpy(average)))
  expect_identical(get_weights(model, trainable = TRUE), averages)
  # ... and batch-norm statistics that a fresh pass reproduces.
  layer <- model$layers[[2]]
  statistics <- function() {
    list(as_r_vector(layer$moving_mean), as_r_vector(layer$moving_variance))
  }
  after_fit <- statistics()
  scores <- evaluate(model, data$x_test, data$y_test, verbose = 0)
  swa_update_bn(model, data$x_train)
  expect_equal(statistics(), after_fit, tolerance = 1e-5)

  # The accuracy is that of the averaged weights: a separate model given the
  # averages and its own statistics scores the same.
  independent <- digits_cnn()
  for (i in seq_along(averages))
    independent$trainable_variables[[i]]$assign(averages[[i]])
  independent |> compile(loss = "sparse_categorical_crossentropy",
                         metrics = "accuracy")
  swa_update_bn(independent, data$x_train)
  independent_scores <- evaluate(independent, data$x_test, data$y_test,
                                 verbose = 0)
  expect_lt(abs(independent_scores$accuracy - scores$accuracy), 1e-6)
  expect_equal(independent_scores$loss, scores$loss, tolerance = 1e-4)

  val_swa_accuracy <- unlist(history$metrics$val_swa_accuracy)
  # NaN for epochs 1 to 3, which end before the first snapshot (t = 90).
  expect_true(all(is.nan(val_swa_accuracy[1:3])))
  expect_false(anyNA(val_swa_accuracy[4:6]))
  expect_lt(abs(val_swa_accuracy[[6]] - scores$accuracy), 1e-6)
  expect_gt(scores$accuracy, 0.9)
})
