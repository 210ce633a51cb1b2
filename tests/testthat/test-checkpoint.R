# callback_swa_model_checkpoint(): the averaged model in the files, the
# training run undisturbed, nothing before the first snapshot.

checkpoint_model <- function(start_averaging) {
  keras3::set_random_seed(1)
  model <- keras3::keras_model_sequential(input_shape = 4) |>
    keras3::layer_dense(1)
  keras3::compile(
    model,
    optimizer = optimizer_swa(keras3::optimizer_sgd(0.05),
                              start_averaging = start_averaging,
                              average_period = 2),
    loss = "mse"
  )
  model
}

test_that("each file holds the averaged model, and training is undisturbed", {
  skip_if_no_kerasswa()
  data <- linear_data()
  folder <- tempfile("checkpoints")
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  model <- checkpoint_model(start_averaging = 9)
  reference <- checkpoint_model(start_averaging = 9)

  # 8 updates per epoch: no snapshot in epoch 1, snapshots 9, 11, 13, 15 in
  # epoch 2. The first save finds no average: a (Python) warning, no file.
  expect_warning(
    with_python_warnings(keras3::fit(
      model, data$x, data$y, batch_size = 8, epochs = 2, shuffle = FALSE,
      verbose = 0, callbacks = list(callback_swa_model_checkpoint(
        file.path(folder, "swa-{epoch}.keras")))
    )),
    "saved nothing to .*averages do not exist yet"
  )
  keras3::fit(reference, data$x, data$y, batch_size = 8, epochs = 2,
              shuffle = FALSE, verbose = 0)
  expect_identical(list.files(folder), "swa-2.keras")

  # The live model went on exactly as one trained without the callback.
  expect_identical(keras3::get_weights(model), keras3::get_weights(reference))
  saved <- keras3::load_model(file.path(folder, "swa-2.keras"))
  expect_identical(swa_snapshot_count(saved), 4L)
  averages <- lapply(model$optimizer$average_variables, function(v)
    reticulate::py_to_r(keras3::op_convert_to_numpy(v)))
  expect_identical(keras3::get_weights(saved), averages)
})

test_that("callback_swa_model_checkpoint() checks its arguments in R", {
  expect_error(callback_swa_model_checkpoint(1), class = "kerasswa_bad_argument",
               "^`filepath` must be a single non-empty string.*= 1$")
  expect_error(callback_swa_model_checkpoint("m.keras", mode = "up"),
               "^`mode` must be one of \"auto\", \"min\", \"max\".*= \"up\"$")
  expect_error(callback_swa_model_checkpoint("m.keras", save_freq = 0),
               "^`save_freq` must be \"epoch\" or a single whole number >= 1.*= 0$")
  expect_error(callback_swa_model_checkpoint("m.keras", save_freq = "batch"),
               "^`save_freq` must be \"epoch\" or .*= \"batch\"$")
  expect_error(callback_swa_model_checkpoint("m.keras",
                                             initial_value_threshold = NA),
               "^`initial_value_threshold` must be NULL or a single finite number.*= NA$")
  expect_error(callback_swa_model_checkpoint("m.keras", save_best_only = "yes"),
               "^`save_best_only` must be TRUE or FALSE.*= \"yes\"$")
  expect_error(callback_swa_model_checkpoint("m.keras", bn_batch_size = 0),
               "^`bn_batch_size` must be a single whole number >= 1.*= 0$")
})
