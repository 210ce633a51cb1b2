#' Use the averaged weights of a model trained with SWA
#'
#' A model compiled with [optimizer_swa()] trains its weights as usual while
#' the optimizer keeps their running average. These functions put the
#' average to use:
#' * `swa_assign_averages()` copies the averages into the model's weights,
#'   for good: call it once training is over.
#' * `with_swa_weights()` evaluates `expr` with the averaged weights in the
#'   model, then puts the training weights back, even if `expr` fails. Use
#'   it to look at the averaged model in the middle of training.
#' * `swa_evaluate()` is `model$evaluate()` run inside `with_swa_weights()`.
#'
#' Only trainable weights have an average. Non-trainable variables, such as
#' batch-normalization statistics, are left as they are (they describe the
#' training weights, not their average): recompute them with
#' [swa_update_bn()], or let [callback_swa()] do both at the end of `fit()`.
#'
#' Before the first snapshot there is no average yet (see `start_averaging`
#' in [optimizer_swa()]): the functions then warn and leave the model's
#' weights as they are.
#'
#' @param model A Keras model compiled with `optimizer = optimizer_swa(...)`,
#'   with keras3's `compile()` or with `model$compile()`.
#' @param expr An R expression to evaluate with the averaged weights.
#' @param x,y,... The data and further arguments of the Python method
#'   `model$evaluate()`. `batch_size` and `steps` are checked and made
#'   integers (`batch_size = 32` works); the rest go to Python as they are:
#'   give other counts as integers (`verbose = 0L`). With keras3, write
#'   `with_swa_weights(model, evaluate(model, x, y))` to use keras3's
#'   `evaluate()` instead.
#'
#' @returns `swa_assign_averages()` returns `model`, invisibly;
#'   `with_swa_weights()` the value of `expr`; `swa_evaluate()` what
#'   `model$evaluate()` returns (the loss, or a list of the loss and the
#'   metrics).
#'
#' @family SWA functions
#' @name swa-weights
#' @template swa-example-model
#' @examplesIf reticulate::py_module_available("kerasswa.swa")
#'
#' # The averaged model's loss; the model keeps its training weights.
#' swa_evaluate(model, x, y, verbose = 0L)
#'
#' # Any code can run with the averaged weights.
#' with_swa_weights(model, model$predict(x[1:2, ], verbose = 0L))
#'
#' # At the end of training, keep the averages.
#' swa_assign_averages(model)
NULL

#' @rdname swa-weights
#' @export
swa_assign_averages <- function(model) {
  optimizer <- model_swa_optimizer(model)
  if (has_snapshots(optimizer, "swa_assign_averages()",
                    "the weights are unchanged"))
    optimizer$assign_average_vars(model$variables)
  invisible(model)
}

#' @rdname swa-weights
#' @export
with_swa_weights <- function(model, expr) {
  optimizer <- model_swa_optimizer(model)
  evaluate_with_averages(optimizer, model, expr, "with_swa_weights()")
}

#' @rdname swa-weights
#' @export
swa_evaluate <- function(model, x = NULL, y = NULL, ...) {
  optimizer <- model_swa_optimizer(model)
  # Keras refuses R's `32` (a double) as a batch size with an error from deep
  # inside TensorFlow that names no argument.
  args <- list(...)
  for (arg in intersect(c("batch_size", "steps"), names(args)))
    args[arg] <- list(as_optional_count(args[[arg]], minimum = 1L, arg = arg))
  evaluate <- function(...) model$evaluate(x, y, ...)
  evaluate_with_averages(optimizer, model, do.call(evaluate, args),
                         "swa_evaluate()")
}

#' Number of snapshots averaged by an SWA optimizer
#'
#' Counts the snapshots of the weights that an [optimizer_swa()] optimizer
#' has averaged so far. With `m = start_averaging` and `k = average_period`,
#' after `u` updates the count is `0` when `u <= m`, otherwise
#' `(u - m - 1) %/% k + 1`.
#'
#' @param object An optimizer made by [optimizer_swa()], or a Keras model
#'   compiled with one.
#'
#' @returns The number of snapshots, an integer (`0` before the optimizer is
#'   used).
#'
#' @family SWA functions
#' @export
#' @template swa-example-model
#' @examplesIf reticulate::py_module_available("kerasswa.swa")
#'
#' # 16 updates, averaging from update 5 every 2: updates 5, 7, ..., 15.
#' swa_snapshot_count(model)
#' swa_snapshot_count(model$optimizer)
swa_snapshot_count <- function(object) {
  if (is_swa_optimizer(object))
    return(as.integer(object$snapshot_count))
  optimizer <- model_swa_optimizer(object, expected = paste(
    "an optimizer made by optimizer_swa(), or a Keras model compiled with one"
  ))
  as.integer(optimizer$snapshot_count)
}

# The SWA optimizer that trains `model`. Under a mixed-precision policy Keras
# wraps the compiled optimizer in a LossScaleOptimizer, so wrappers that keep
# the real optimizer in `inner_optimizer` are looked through.
model_swa_optimizer <- function(model,
                                expected = paste("a Keras model compiled",
                                                 "with optimizer_swa()"),
                                arg = deparse(substitute(model)),
                                call = sys.call(-1L)) {
  optimizer <- if (is_keras_model(model) &&
                   reticulate::py_has_attr(model, "optimizer"))
    model$optimizer
  while (is_keras_optimizer(optimizer) && !is_swa_optimizer(optimizer) &&
         reticulate::py_has_attr(optimizer, "inner_optimizer"))
    optimizer <- optimizer$inner_optimizer
  if (!is_swa_optimizer(optimizer))
    stop_bad_argument(arg, model, expected, call,
                      received = describe_training(model))
  optimizer
}

is_keras_model <- function(x) {
  inherits(x, "python.builtin.object") &&
    reticulate::py_has_attr(x, "compile") &&
    reticulate::py_has_attr(x, "variables")
}

describe_training <- function(model) {
  if (!is_keras_model(model))
    return(describe_value(model))
  if (!reticulate::py_has_attr(model, "optimizer") || is.null(model$optimizer))
    return(paste(describe_value(model), "(not compiled)"))
  sprintf("%s, compiled with %s", describe_value(model),
          describe_value(model$optimizer))
}

# In Python the SWA methods only warn (through Python's `warnings`, which R
# does not see) when there is no average yet; say it here as an R warning and
# leave Python alone.
has_snapshots <- function(optimizer, caller, consequence) {
  if (optimizer$snapshot_count > 0L)
    return(TRUE)
  warning(warningCondition(
    sprintf(paste0("%s: no snapshot of the weights has been averaged yet ",
                   "(the first is taken at update %d, `start_averaging`), ",
                   "so %s."),
            caller, optimizer$start_averaging, consequence),
    class = "kerasswa_no_snapshot"
  ))
  FALSE
}

evaluate_with_averages <- function(optimizer, model, expr, caller) {
  if (!has_snapshots(optimizer, caller,
                     "it runs with the training weights"))
    return(expr)
  variables <- model$variables
  # Swapping twice restores the training weights bit for bit, and on.exit()
  # does it even when `expr` fails.
  optimizer$swap_average_vars(variables)
  on.exit(optimizer$swap_average_vars(variables), add = TRUE)
  expr
}
