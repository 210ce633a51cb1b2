# A generated sweep: every scalar argument of the exported functions, given
# each of R's awkward values in turn. Each call either is refused with an error
# that names the argument, having changed nothing, or works end to end (the
# optimizer trains and saves, the callback runs in fit(), the function returns
# finite numbers). The counts go to the file KERASSWA_SWEEP_REPORT names.
# It takes a minute or so: `make test-r` runs it on TensorFlow and on JAX
# (KERASSWA_SWEEP=true).

SWEEP_VALUES <- list(
  "NA_integer_" = NA_integer_, "NA_real_" = NA_real_, "NA" = NA,
  "Inf" = Inf, "-Inf" = -Inf, "-0" = -0, "0" = 0, "0.5" = 0.5, "2.5" = 2.5,
  "integer.max + 1" = .Machine$integer.max + 1, "2^53" = 2^53,
  "1e-320" = 1e-320, "1e300" = 1e300, "3L" = 3L, "TRUE" = TRUE,
  "FALSE" = FALSE,
  "factor" = factor("a"), "Date" = as.Date("2026-01-01"),
  "list(1)" = list(1), "NULL" = NULL, "c(1, 2)" = c(1, 2), "\"1\"" = "1",
  "\"\"" = ""
)

sweep_data <- function() {
  set.seed(2)
  x <- matrix(runif(64), ncol = 4)
  list(x = x, y = x %*% c(1, -1, 2, 0.5))
}

# Learning rates: a huge one is accepted, as Keras accepts it, and training
# then diverges, as it must; working means training and saving without error.
LEARNING_RATES <- c("learning_rate", "base_learning_rate", "swa_learning_rate")

# A small trained model with `optimizer`, saved and loaded back: what
# "working" means for an optimizer. Eagerly: what R hands to Python is what
# this sweep is about; the same Python values in traced and compiled steps, on
# every backend, are tests/python/test_properties.py's (and tracing would
# triple the sweep's time).
train_and_reload <- function(optimizer, arg = "") {
  data <- sweep_data()
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  model |> compile(optimizer = optimizer, loss = "mse", run_eagerly = TRUE)
  model |> fit(data$x, data$y, batch_size = 4, epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".keras")
  on.exit(unlink(path), add = TRUE)
  save_model(model, path)
  restored <- load_model(path)
  weights <- c(unlist(get_weights(model)), unlist(get_weights(restored)))
  all(is.finite(weights)) || arg %in% LEARNING_RATES
}

trained_model <- function(optimizer) {
  data <- sweep_data()
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  model |> compile(optimizer = optimizer, loss = "mse", run_eagerly = TRUE)
  model |> fit(data$x, data$y, batch_size = 4, epochs = 1, verbose = 0)
  model
}

# Each case: the function, its fixed arguments, the arguments swept, and what
# to do with a value it accepts (TRUE when that worked).
sweep_cases <- function() {
  data <- sweep_data()
  swa_model <- trained_model(optimizer_swa(optimizer_sgd(0.05),
                                           average_period = 1))
  swag_model <- trained_model(optimizer_swag(optimizer_sgd(0.05),
                                             average_period = 1))
  # 4 updates with saves after each: posthoc_ema() rebuilds from them.
  posthoc_folder <- tempfile("sweep")
  posthoc_model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  posthoc_model |> compile(optimizer = optimizer_posthoc_ema(optimizer_sgd(0.05)),
                           loss = "mse")
  posthoc_model |> fit(data$x, data$y, batch_size = 4, epochs = 1, verbose = 0,
                       callbacks = list(callback_posthoc_ema_checkpoint(
                         posthoc_folder, save_freq = 1)))
  fit_with <- function(callback, arg) {
    model <- trained_model(optimizer_swa(optimizer_sgd(0.05),
                                         start_averaging = 2,
                                         average_period = 1))
    model |> fit(data$x, data$y, batch_size = 4, epochs = 2, verbose = 0,
                 callbacks = list(callback))
    all(is.finite(unlist(get_weights(model))))
  }
  manual_fit_with <- function(callback, arg) {
    model <- trained_model(optimizer_swa(optimizer_sgd(0.05),
                                         start_averaging = NULL))
    model |> fit(data$x, data$y, batch_size = 4, epochs = 2, verbose = 0,
                 callbacks = list(callback))
    all(is.finite(unlist(get_weights(model))))
  }
  list(
    list(name = "optimizer_swa", fun = optimizer_swa, fixed = function() list(optimizer_sgd(0.05)),
         args = c("start_averaging", "average_period", "name",
                  "sequential_update", "averaging", "clipnorm", "clipvalue",
                  "decay", "learning_rate", "global_clipnorm"),
         works = train_and_reload),
    list(name = "optimizer_swag", fun = optimizer_swag, fixed = function() list(optimizer_sgd(0.05)),
         args = c("start_averaging", "average_period", "max_rank",
                  "var_clamp"),
         works = train_and_reload),
    list(name = "averaging_ema", fun = averaging_ema, fixed = list(),
         args = c("decay", "min_decay", "inv_gamma", "power"),
         works = function(rule, arg)
           train_and_reload(optimizer_swa(optimizer_sgd(0.05), average_period = 1,
                                          averaging = rule), arg)),
    list(name = "averaging_power_ema", fun = averaging_power_ema, fixed = list(),
         args = c("sigma_rel", "gamma"),
         works = function(rule, arg)
           train_and_reload(optimizer_swa(optimizer_sgd(0.05), average_period = 1,
                                          averaging = rule), arg)),
    list(name = "optimizer_posthoc_ema", fun = optimizer_posthoc_ema,
         fixed = function() list(optimizer_sgd(0.05)),
         args = c("sigma_rels", "start_averaging", "average_period"),
         works = train_and_reload),
    list(name = "callback_posthoc_ema_checkpoint", fun = callback_posthoc_ema_checkpoint,
         fixed = function() list(tempfile("sweep")),
         args = c("save_freq", "verbose"),
         works = function(callback, arg) {
           model <- trained_model(optimizer_posthoc_ema(optimizer_sgd(0.05)))
           model |> fit(data$x, data$y, batch_size = 4, epochs = 1, verbose = 0,
                        callbacks = list(callback))
           length(list.files(callback$folder)) > 0L
         }),
    list(name = "posthoc_ema", fun = posthoc_ema,
         fixed = list(posthoc_model, posthoc_folder, sigma_rel = 0.1),
         args = c("sigma_rel", "gamma", "snapshot_count"),
         works = function(error, arg)
           is.finite(error) && all(is.finite(unlist(get_weights(posthoc_model))))),
    list(name = "posthoc_ema_error", fun = posthoc_ema_error,
         fixed = list(0.1, total_updates = 100, save_every = 10),
         args = c("sigma_rel", "total_updates", "save_every", "sigma_rels",
                  "start_averaging", "average_period"),
         works = function(error, arg) all(is.finite(error))),
    list(name = "callback_swa", fun = callback_swa, fixed = list(),
         args = c("bn_batch_size", "bn_steps", "validation_batch_size",
                  "finish_after_epoch", "average_non_trainable", "verbose"),
         works = fit_with),
    list(name = "callback_swa", fun = callback_swa, fixed = list(), args = "start_epoch",
         works = manual_fit_with),
    list(name = "callback_swa_model_checkpoint", fun = callback_swa_model_checkpoint,
         fixed = list(file.path(tempdir(), "sweep-{epoch}.keras"),
                      monitor = "loss"),
         args = c("verbose", "save_best_only", "save_weights_only", "mode",
                  "save_freq", "initial_value_threshold", "update_weights",
                  "bn_batch_size"),
         works = fit_with),
    list(name = "learning_rate_schedule_swa", fun = learning_rate_schedule_swa,
         fixed = list(base_learning_rate = 0.1, swa_learning_rate = 0.01,
                      start_averaging = 4),
         args = c("base_learning_rate", "swa_learning_rate",
                  "start_averaging", "anneal_steps", "cycle_length"),
         works = function(schedule, arg)
           train_and_reload(optimizer_swa(optimizer_sgd(schedule)), arg)),
    list(name = "swa_update_bn", fun = swa_update_bn, fixed = list(swa_model, data$x),
         args = c("batch_size", "steps", "verbose"),
         works = function(model, arg) all(is.finite(unlist(get_weights(model))))),
    list(name = "swag_predict", fun = swag_predict, fixed = list(swag_model, data$x, num_samples = 2),
         args = c("num_samples", "scale", "covariance", "batch_size", "seed",
                  "verbose"),
         works = function(prediction, arg) all(is.finite(prediction))),
    list(name = "with_swag_sample", fun = with_swag_sample, fixed = list(swag_model, 1),
         args = c("seed", "scale", "covariance"),
         works = function(value, arg) identical(value, 1))
  )
}

# What an accepted value left in Python: the configuration of an optimizer or
# schedule, the plain attributes of a callback; NULL for an R result. Two
# values that leave the same state behave the same, so each state is run end
# to end once (R's `3L`, `3` and `2.5 + 0.5` all become `3`, say).
python_state <- function(result) {
  if (!inherits(result, "python.builtin.object"))
    return(NULL)
  builtins <- reticulate::import_builtins()
  config <- if (reticulate::py_has_attr(result, "get_config")) result$get_config()
            else builtins$vars(result)
  paste(class(result)[[1L]],
        reticulate::import("json")$dumps(config, sort_keys = TRUE,
                                         default = builtins$repr))
}

# The weights of the models a call could change, to check that a refusal
# changed nothing.
model_state <- function(fixed) {
  models <- Filter(function(a) inherits(a, "keras.src.models.model.Model"),
                   fixed)
  lapply(models, get_weights)
}

test_that("every argument of the exported functions: refused by name, or works", {
  skip_if_not(isTRUE(as.logical(Sys.getenv("KERASSWA_SWEEP"))),
              "KERASSWA_SWEEP is not set (make test-r sets it)")
  skip_if_no_kerasswa()
  counts <- list()
  verdicts <- new.env()
  for (case in sweep_cases()) {
    for (arg in case$args) {
      for (label in names(SWEEP_VALUES)) {
        fixed <- if (is.function(case$fixed)) case$fixed() else case$fixed
        args <- fixed
        args[arg] <- SWEEP_VALUES[label]  # a list of one, so that NULL is kept
        before <- model_state(fixed)
        # Warnings (update_bn() on a model without batch normalization, ...)
        # are beside the point here.
        result <- tryCatch(
          suppressWarnings(do.call(case$fun, args)),
          error = function(e) e
        )
        what <- sprintf("%s = %s", arg, label)
        if (inherits(result, "error")) {
          message <- conditionMessage(result)
          expect(grepl(arg, message, fixed = TRUE),
                 sprintf("refusal of %s does not name it: %s", what, message))
          expect_identical(model_state(fixed), before, label = what)
          outcome <- "refused"
        } else {
          state <- python_state(result)
          key <- if (!is.null(state)) paste(case$name, arg, state)
          worked <- if (!is.null(key)) verdicts[[key]]
          if (is.null(worked)) {
            worked <- tryCatch(isTRUE(suppressWarnings(case$works(result, arg))),
                               error = function(e) conditionMessage(e))
            if (!is.null(key)) verdicts[[key]] <- worked
          }
          expect(isTRUE(worked),
                 sprintf("%s was accepted, then failed: %s", what, worked))
          outcome <- "worked"
        }
        key <- paste(case$name, arg, outcome)
        counts[[key]] <- (if (is.null(counts[[key]])) 0L else counts[[key]]) + 1L
      }
    }
  }
  report <- Sys.getenv("KERASSWA_SWEEP_REPORT")
  if (nzchar(report))
    writeLines(sprintf("%s %d", names(counts), unlist(counts)), report)
})
