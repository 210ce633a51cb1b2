# Bad R values are refused in R, before Python is touched: none of these
# tests needs Python.

call_swa <- function(...) optimizer_swa("sgd", ...)

expect_refused <- function(arg, value) {
  args <- stats::setNames(list(value), arg)
  expect_error(
    do.call(call_swa, args),
    regexp = paste0("^`", arg, "` must be"),
    class = "kerasswa_bad_argument",
    label = sprintf("optimizer_swa(%s = %s)", arg, deparse(value))
  )
}

test_that("counts must be single whole numbers in range", {
  bad <- list(NA, NA_real_, NaN, 2.5, -1, Inf, TRUE, "5", c(1, 2),
              integer(0), list(5))
  for (value in bad) {
    expect_refused("start_averaging", value)
    expect_refused("average_period", value)
  }
  expect_refused("average_period", 0)
  expect_refused("start_averaging", 2^31)
})

test_that("errors show the value received and what is expected", {
  expect_error(call_swa(start_averaging = 2.5), fixed = TRUE,
               "`start_averaging` must be NULL or a single whole number >= 0.\nReceived: start_averaging = 2.5")
  expect_error(call_swa(average_period = 0), fixed = TRUE,
               "`average_period` must be a single whole number >= 1.\nReceived: average_period = 0")
  expect_error(call_swa(average_period = c(1, 2)), fixed = TRUE,
               "Received: average_period = c(1, 2)")
  expect_error(call_swa(start_averaging = NA), fixed = TRUE,
               "Received: start_averaging = NA")
  expect_error(call_swa(clipnorm = -1), fixed = TRUE,
               "`clipnorm` must be NULL or a single finite number > 0.\nReceived: clipnorm = -1")
  expect_error(call_swa(decay = -0.5), fixed = TRUE,
               "`decay` must be NULL or a single finite number >= 0.\nReceived: decay = -0.5")
  expect_error(call_swa(sequential_update = "yes"), fixed = TRUE,
               "`sequential_update` must be TRUE or FALSE.\nReceived: sequential_update = \"yes\"")
  # The error is reported as coming from the user's call.
  error <- tryCatch(call_swa(start_averaging = -1), error = identity)
  expect_identical(conditionCall(error)[[1]], quote(optimizer_swa))
})

test_that("rates must be NULL or finite and positive", {
  for (arg in c("clipnorm", "clipvalue", "global_clipnorm", "learning_rate",
                "lr")) {
    for (value in list(-1, 0, NA, NA_real_, Inf, "1", c(1, 2), TRUE))
      expect_refused(arg, value)
  }
  for (value in list(-0.1, NA, Inf, "0.1", c(0, 1)))
    expect_refused("decay", value)
})

test_that("at most one clipping argument, refused in R", {
  expect_error(optimizer_swa("sgd", clipnorm = 1, clipvalue = 0.5),
               "`clipnorm`.*`global_clipnorm`.*clipnorm = 1, clipvalue = 0.5",
               class = "kerasswa_bad_argument")
  expect_error(optimizer_swa("sgd", clipvalue = 1, global_clipnorm = 2),
               "clipvalue = 1, global_clipnorm = 2",
               class = "kerasswa_bad_argument")
})

test_that("sequential_update must be TRUE or FALSE", {
  for (value in list(NA, 1, 0, "TRUE", c(TRUE, FALSE), logical(0), NULL))
    expect_refused("sequential_update", value)
})

test_that("name must be NULL or a single non-empty string", {
  for (value in list(NA_character_, "", 1, c("a", "b"), character(0)))
    expect_refused("name", value)
})

test_that("a learning-rate function that needs an argument is refused in R", {
  for (value in list(function(step) 0.1, function(step, scale = 1) 0.1, exp))
    expect_refused("learning_rate", value)
  expect_error(call_swa(learning_rate = function(step, ...) 0.1), fixed = TRUE,
               "Keras calls a learning-rate function with none")
  expect_error(optimizer_swag("sgd", learning_rate = function(step) 0.1),
               "^`learning_rate` must be a function of no arguments",
               class = "kerasswa_bad_argument")
})

test_that("optimizer must be a Keras 3 optimizer or the name of one", {
  bad <- list(NULL, 1, TRUE, NA_character_, "", c("sgd", "adam"),
              list(class_name = "SGD"), function(x) x)
  for (value in bad) {
    expect_error(
      optimizer_swa(value),
      "^`optimizer` must be a Keras 3 optimizer, such as optimizer_sgd\\(\\)",
      class = "kerasswa_bad_argument"
    )
  }
  expect_error(optimizer_swa(NULL), "Received: optimizer = NULL",
               fixed = TRUE)
})

test_that("`...` takes only global_clipnorm and learning_rate, by name", {
  expect_error(call_swa(momentum = 0.9), class = "kerasswa_bad_argument",
               "`...` takes only `global_clipnorm` and `learning_rate`.*Received: momentum = 0.9")
  expect_error(call_swa(5, 2, "SWA", TRUE, NULL, NULL, NULL, NULL, "mean", 3),
               "Received: <unnamed> = 3", fixed = TRUE)
  expect_error(call_swa(learning_rate = 0.1, learning_rate = 0.2),
               "Received: learning_rate = 0.2", fixed = TRUE)
})

test_that("lr and learning_rate together are refused", {
  expect_error(call_swa(lr = 0.1, learning_rate = 0.2),
               class = "kerasswa_bad_argument", fixed = TRUE,
               "Give `learning_rate` or its deprecated alias `lr`, not both.\nReceived: lr = 0.1, learning_rate = 0.2")
})

test_that("a bad value is refused without starting Python", {
  output <- run_r(paste(
    "library(kerasswa)",
    "message(tryCatch(optimizer_swa('sgd', average_period = 2.5), error = conditionMessage))",
    "message(tryCatch(learning_rate_schedule_swa(0.1, 0.02, 5, cycle_length = 2.5), error = conditionMessage))",
    "message(tryCatch(callback_swa(bn_data = matrix(1, 2, 2), average_non_trainable = TRUE), error = conditionMessage))",
    "message(tryCatch(callback_swa(validation_data = list(1:2, 1:2, 1:2, 1:2)), error = conditionMessage))",
    "message(tryCatch(swa_update_bn('model', 1), error = conditionMessage))",
    "cat('python started:', reticulate::py_available(), '\\n')",
    sep = "; "
  ))
  expect_identical(attr(output, "status"), NULL)
  expect_match(output, "`average_period` must be", all = FALSE)
  expect_match(output, "`cycle_length` must be", all = FALSE)
  expect_match(output, "Give `bn_data` (recompute", all = FALSE, fixed = TRUE)
  expect_match(output, "`validation_data` must be", all = FALSE)
  expect_match(output, "`model` must be a Keras model", all = FALSE)
  expect_match(output, "python started: FALSE", all = FALSE, fixed = TRUE)
})
