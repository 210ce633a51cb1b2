# Post-hoc EMA from R: optimizer_posthoc_ema(), its callback, posthoc_ema()
# and posthoc_ema_error(), with numbers worked out in R from the formulas.

library(keras3)

# The linear model of helper-python.R with the post-hoc EMA optimizer, trained
# for `epochs` epochs of 8 updates (64 samples, batches of 8), saving every
# `save_freq` batches to `folder`.
posthoc_run <- function(folder, epochs = 4, save_freq = 4, ...) {
  data <- linear_data()
  model <- linear_model(optimizer_posthoc_ema(optimizer_sgd(0.05), ...))
  model |> fit(data$x, data$y, batch_size = 8, epochs = epochs,
               shuffle = FALSE, verbose = 0,
               callbacks = list(callback_posthoc_ema_checkpoint(
                 folder, save_freq = save_freq)))
  model
}

# <p_a, p_b> of power profiles (g + 1) s^g / t^(g + 1) on [0, t].
profile_inner <- function(t_a, g_a, t_b, g_b) {
  if (t_a > t_b)
    return(profile_inner(t_b, g_b, t_a, g_a))
  (g_a + 1) * (g_b + 1) / ((g_a + g_b + 1) * t_b) * (t_a / t_b)^g_b
}

test_that("optimizer_posthoc_ema() makes the optimizer with the arguments given", {
  skip_if_no_kerasswa()
  opt <- optimizer_posthoc_ema(optimizer_sgd(0.1), sigma_rels = c(0.04, 0.1, 0.2),
                               start_averaging = 3, average_period = 2,
                               clipnorm = 1, name = "ph")
  expect_s3_class(opt, "kerasswa.posthoc.PostHocEMA")
  expect_s3_class(opt, "kerasswa.swa.SWA")
  expect_equal(unlist(opt$sigma_rels), c(0.04, 0.1, 0.2))
  expect_length(opt$gammas, 3L)
  expect_identical(opt$start_averaging, 3L)
  expect_identical(opt$average_period, 2L)
  expect_identical(opt$clipnorm, 1)
  expect_identical(opt$name, "ph")
  defaults <- optimizer_posthoc_ema("sgd")
  expect_equal(unlist(defaults$sigma_rels), c(0.05, 0.1))
  expect_identical(defaults$average_period, 1L)
})

test_that("the callback saves, and posthoc_ema() rebuilds a saved width exactly", {
  skip_if_no_kerasswa()
  folder <- tempfile("profiles")
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  model <- posthoc_run(folder)
  # 32 updates, a snapshot at each, saves every 4 updates.
  expect_identical(list.files(folder),
                   sprintf("posthoc-ema-%010d.npz", seq(4, 32, by = 4)))
  second <- lapply(model$optimizer$profile_variables[[2]], op_convert_to_numpy)
  # The width 0.10 at the last save is the second profile itself.
  rebuilt <- linear_model()
  error <- posthoc_ema(rebuilt, folder, sigma_rel = 0.10)
  expect_lt(error, 1e-6)
  expect_equal(lapply(get_weights(rebuilt), as.vector),
               lapply(second, as.vector), tolerance = 1e-6)
  # The first profile is the optimizer's own average, which
  # swa_assign_averages() gives.
  posthoc_ema(rebuilt, folder, sigma_rel = 0.05)
  swa_assign_averages(model)
  expect_equal(get_weights(rebuilt), get_weights(model), tolerance = 1e-6)
})

test_that("posthoc_ema() rebuilds another width close to one trained directly", {
  skip_if_no_kerasswa()
  folder <- tempfile("profiles")
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  posthoc_run(folder)
  direct <- linear_swa_model(start_averaging = 0, average_period = 1,
                             averaging = averaging_power_ema(sigma_rel = 0.07))
  data <- linear_data()
  direct |> fit(data$x, data$y, batch_size = 8, epochs = 4, shuffle = FALSE,
                verbose = 0)
  swa_assign_averages(direct)
  rebuilt <- linear_model()
  error <- posthoc_ema(rebuilt, folder, sigma_rel = 0.07)
  expect_gt(error, 0)
  expect_lt(error, 0.05)
  # Within the error's reach: the weights move by about 1 over the run.
  expect_equal(unlist(get_weights(rebuilt)), unlist(get_weights(direct)),
               tolerance = 0.01)
})

test_that("posthoc_ema_error() follows the closed-form inner products", {
  skip_if_no_kerasswa()
  # One save of one profile (width 0.10) at the end, target width 0.2 at
  # the same time t: x = 1, and the relative error is
  # sqrt(1 - 2 <a, b> / <b, b> + <a, a> / <b, b>).
  g_a <- averaging_power_ema(sigma_rel = 0.10)$gamma
  g_b <- averaging_power_ema(sigma_rel = 0.2)$gamma
  t <- 100
  expected <- sqrt(1 - 2 * profile_inner(t, g_a, t, g_b) /
                     profile_inner(t, g_b, t, g_b) +
                     profile_inner(t, g_a, t, g_a) /
                     profile_inner(t, g_b, t, g_b))
  expect_equal(posthoc_ema_error(0.2, 100, 100, sigma_rels = 0.10), expected,
               tolerance = 1e-9)
  # A saved width at the end is rebuilt exactly; the errors come as a vector.
  errors <- posthoc_ema_error(c(0.05, 0.07, 0.10), 1e6, 5e4)
  expect_length(errors, 3L)
  expect_lt(errors[[1]], 1e-6)
  expect_lt(errors[[3]], 1e-6)
  expect_gt(errors[[2]], 1e-4)
  # Denser saves rebuild better.
  expect_lt(posthoc_ema_error(0.07, 1e6, 1e4), errors[[2]] / 10)
})

test_that("bad arguments are refused in R, before Python", {
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  refused(optimizer_posthoc_ema("sgd", sigma_rels = c(0.1, 0.1)),
          "sigma_rels", "c\\(0.1, 0.1\\)")
  refused(optimizer_posthoc_ema("sgd", sigma_rels = numeric()),
          "sigma_rels", "numeric\\(0\\)")
  refused(optimizer_posthoc_ema("sgd", sigma_rels = c(0.05, 0.5)),
          "sigma_rels", "c\\(0.05, 0.5\\)")
  refused(optimizer_posthoc_ema("sgd", sigma_rels = "0.1"),
          "sigma_rels", "\"0.1\"")
  refused(optimizer_posthoc_ema("sgd", average_period = 0), "average_period", "0")
  expect_error(optimizer_posthoc_ema("sgd", averaging = "mean"),
               class = "kerasswa_bad_argument", "takes no `averaging`")
  refused(callback_posthoc_ema_checkpoint(1), "folder", "1")
  refused(callback_posthoc_ema_checkpoint("f", save_freq = 0), "save_freq", "0")
  refused(callback_posthoc_ema_checkpoint("f", verbose = 2), "verbose", "2")
  refused(posthoc_ema(NULL, "f", 0.1), "model", "NULL")
  refused(posthoc_ema_error(0.4, 100, 10), "sigma_rel\\[1\\]", "0.4")
  refused(posthoc_ema_error(c(0.1, NA), 100, 10), "sigma_rel\\[2\\]", "NA_real_")
  refused(posthoc_ema_error(0.1, 0, 10), "total_updates", "0")
  refused(posthoc_ema_error(0.1, 100, 2.5), "save_every", "2.5")
  refused(posthoc_ema_error(0.1, 100, 10, average_period = 0),
          "average_period", "0")
})

test_that("posthoc_ema() refuses bad models, folders and targets", {
  skip_if_no_kerasswa()
  model <- linear_model()
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  refused(posthoc_ema(model, 3, 0.1), "folder", "3")
  refused(posthoc_ema(model, "f", sigma_rel = 0.5), "sigma_rel", "0.5")
  refused(posthoc_ema(model, "f", 0.1, snapshot_count = 0), "snapshot_count", "0")
  expect_error(posthoc_ema(model, "f"), class = "kerasswa_bad_argument",
               "exactly one of `sigma_rel` and `gamma`")
  empty <- tempfile("empty")
  dir.create(empty)
  on.exit(unlink(empty, recursive = TRUE), add = TRUE)
  expect_error(posthoc_ema(model, empty, 0.1),
               "`folder` holds no post-hoc EMA profiles")
  expect_error(posthoc_ema(model, file.path(empty, "missing"), 0.1),
               "`folder` is not a folder")
  folder <- tempfile("profiles")
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  posthoc_run(folder, epochs = 1)
  expect_error(posthoc_ema(model, folder, 0.1, snapshot_count = 9),
               "`snapshot_count` is later than the last save")
  wide <- keras_model_sequential(input_shape = 5) |> layer_dense(1)
  expect_error(posthoc_ema(wide, folder, 0.1),
               "`model` does not match the saved profiles")
})
