# The averaging rules from R: averaging_ema() and averaging_power_ema() as
# optimizer_swa()'s `averaging`, pinned by numbers worked out by hand from
# their formulas, saved with the model, and refused in R when out of range.

library(keras3)

# Every weight sees the gradient 0.1 at every update (see
# test-averaging-modes.R): with SGD(1), one update per epoch takes the kernel
# from c(1, 1) to 0.9, 0.8, 0.7 and the bias from c(2, 2) to 1.9, 1.8, 1.7.
rule_model <- function(averaging, updates = 3) {
  model <- keras_model_sequential(input_shape = 1) |>
    layer_dense(2, kernel_initializer = initializer_ones(),
                bias_initializer = initializer_constant(2))
  model |> compile(
    optimizer = optimizer_swa(optimizer_sgd(1), start_averaging = 0,
                              average_period = 1, averaging = averaging),
    loss = function(y_true, y_pred) 0.1 * op_sum(y_pred, axis = -1)
  )
  model |> fit(matrix(1), matrix(0, 1, 2), epochs = updates, batch_size = 1,
               verbose = 0)
  model
}

averaged_kernel <- function(model) {
  as.vector(op_convert_to_numpy(model$optimizer$average_variables[[1]]))
}

test_that("averaging_power_ema() gives the closed-form weights", {
  skip_if_no_kerasswa()
  # gamma = 1: after 3 snapshots, snapshot tau weighs
  # (tau/3)^2 - ((tau-1)/3)^2 = 1/9, 3/9, 5/9:
  # (0.9 + 3 * 0.8 + 5 * 0.7) / 9 = 6.8 / 9.
  model <- rule_model(averaging_power_ema(gamma = 1))
  expect_equal(averaged_kernel(model), rep(6.8 / 9, 2), tolerance = 1e-6)
  # gamma = 0 is the plain mean.
  model <- rule_model(averaging_power_ema(gamma = 0))
  expect_equal(averaged_kernel(model), c(0.8, 0.8), tolerance = 1e-6)
})

test_that("averaging_power_ema() converts sigma_rel and gamma both ways", {
  skip_if_no_kerasswa()
  # The figures of EDM2: 0.05 is gamma 16.97, 0.10 is 6.94.
  expect_equal(averaging_power_ema(sigma_rel = 0.05)$gamma, 16.97,
               tolerance = 3e-4)
  expect_equal(averaging_power_ema(sigma_rel = 0.10)$gamma, 6.94,
               tolerance = 1e-3)
  g <- averaging_power_ema(sigma_rel = 0.07)$gamma
  expect_equal(0.07^2 * (g + 2)^2 * (g + 3), g + 1, tolerance = 1e-10)
  expect_equal(averaging_power_ema(gamma = 0)$sigma_rel, sqrt(1 / 12))
})

test_that("averaging_ema() warms its decay up as the formula says", {
  skip_if_no_kerasswa()
  # decay_n = max(min(0.6, 1 - (1 + n)^-1), 0): 0 (a copy), then 0.5, then
  # min(0.6, 2/3) = 0.6: 0.9, then 0.85, then 0.6 * 0.85 + 0.4 * 0.7 = 0.79.
  model <- rule_model(averaging_ema(0.6, power = 1))
  expect_equal(averaged_kernel(model), c(0.79, 0.79), tolerance = 1e-6)
  # A floor of 0.55 raises decay_1 from 0.5: 0.55 * 0.9 + 0.45 * 0.8 = 0.855,
  # then 0.6 * 0.855 + 0.4 * 0.7 = 0.793.
  model <- rule_model(averaging_ema(0.6, min_decay = 0.55, power = 1))
  expect_equal(averaged_kernel(model), c(0.793, 0.793), tolerance = 1e-6)
})

test_that("the rules are kept when the model is saved", {
  skip_if_no_kerasswa()
  data <- linear_data()
  for (rule in list(averaging_ema(0.99, power = 0.75),
                    averaging_power_ema(sigma_rel = 0.08))) {
    model <- linear_swa_model(start_averaging = 2, average_period = 3,
                              averaging = rule)
    model |> fit(data$x, data$y, batch_size = 8, verbose = 0)
    path <- tempfile(fileext = ".keras")
    save_model(model, path)
    loaded <- load_model(path)
    unlink(path)
    expect_identical(class(loaded$optimizer$averaging)[[1]], class(rule)[[1]])
    expect_identical(loaded$optimizer$averaging$get_config(), rule$get_config())
    expect_identical(swa_snapshot_count(loaded), 2L)  # updates 2 and 5 of 8
    expect_equal(averaged_kernel(loaded), averaged_kernel(model))
  }
})

test_that("bad rules are refused in R, before Python", {
  refused <- function(call, arg, value) {
    expect_error(call, class = "kerasswa_bad_argument",
                 regexp = sprintf("^`%s` must be .*\nReceived: %s = %s$",
                                  arg, arg, value))
  }
  refused(averaging_ema(0), "decay", "0")
  refused(averaging_ema(1), "decay", "1")
  refused(averaging_ema(NA), "decay", "NA")
  refused(averaging_ema("0.9"), "decay", "\"0.9\"")
  refused(averaging_ema(c(0.9, 0.99)), "decay", "c\\(0.9, 0.99\\)")
  refused(averaging_ema(0.9, min_decay = 0.95), "min_decay", "0.95")
  expect_error(averaging_ema(0.9, min_decay = 0.95),
               "in \\[0, decay\\] = \\[0, 0.9\\]")
  refused(averaging_ema(0.9, min_decay = -0.1), "min_decay", "-0.1")
  refused(averaging_ema(0.9, inv_gamma = 0), "inv_gamma", "0")
  refused(averaging_ema(0.9, power = -1), "power", "-1")
  refused(averaging_ema(0.9, power = NULL), "power", "NULL")

  refused(averaging_power_ema(sigma_rel = 0), "sigma_rel", "0")
  refused(averaging_power_ema(sigma_rel = 0.3), "sigma_rel", "0.3")
  refused(averaging_power_ema(sigma_rel = NA), "sigma_rel", "NA")
  refused(averaging_power_ema(sigma_rel = "0.1"), "sigma_rel", "\"0.1\"")
  refused(averaging_power_ema(gamma = -1), "gamma", "-1")
  refused(averaging_power_ema(gamma = Inf), "gamma", "Inf")
  expect_error(averaging_power_ema(), class = "kerasswa_bad_argument",
               "^Give exactly one of `sigma_rel` and `gamma`.\nReceived: sigma_rel = NULL, gamma = NULL$")
  expect_error(averaging_power_ema(0.1, 3), class = "kerasswa_bad_argument",
               "Received: sigma_rel = 0.1, gamma = 3$")
})

test_that("SWAG takes no rule, and optimizer_swa() refuses other Python objects", {
  skip_if_no_kerasswa()
  expect_error(optimizer_swag("sgd", averaging = averaging_ema(0.9)),
               class = "kerasswa_bad_argument", "takes no `averaging`")
  expect_error(optimizer_swa("sgd", averaging = optimizer_sgd()),
               class = "kerasswa_bad_argument",
               "^`averaging` must be .*averaging_power_ema\\(\\)")
})
