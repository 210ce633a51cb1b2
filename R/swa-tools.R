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
#' * `swa_evaluate()` is keras3's `evaluate()` run inside `with_swa_weights()`.
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
#' @param model A Keras model compiled with `optimizer = optimizer_swa(...)`.
#' @param expr An R expression to evaluate with the averaged weights.
#' @param x,y,... The data and further arguments of keras3's `evaluate()`,
#'   such as `batch_size = 32` or `verbose = 0`. `batch_size` and `steps`
#'   are checked first, with an error that names them.
#'
#' @returns `swa_assign_averages()` returns `model`, invisibly;
#'   `with_swa_weights()` the value of `expr`; `swa_evaluate()` what keras3's
#'   `evaluate()` returns: the loss and the metrics of the averaged model, by
#'   name.
#'
#' @family SWA functions
#' @name swa-weights
#' @template swa-example-model
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#'
#' # The averaged model's loss; the model keeps its training weights.
#' swa_evaluate(model, x, y, verbose = 0)
#'
#' # Any code can run with the averaged weights.
#' with_swa_weights(model, predict(model, x[1:2, ], verbose = 0))
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
  args <- list(...)
  for (arg in intersect(c("batch_size", "steps"), names(args)))
    args[arg] <- list(as_optional_count(args[[arg]], minimum = 1L, arg = arg))
  evaluate_with_averages(
    optimizer, model,
    do.call(keras3::evaluate, c(list(model, x = x, y = y), args)),
    "swa_evaluate()"
  )
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
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
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

#' Take a snapshot of the weights now
#'
#' Adds the model's current trainable weights to the average of its
#' [optimizer_swa()] (or [optimizer_swag()]) optimizer as one more snapshot,
#' exactly as an automatic snapshot would. Made with
#' `start_averaging = NULL`, the optimizer takes no snapshot by itself and
#' you decide when to average: at the end of an epoch, of a learning-rate
#' cycle, between two `fit()` calls. ([callback_swa()] with `start_epoch`
#' takes them at the end of every epoch from `start_epoch` on.) An optimizer
#' with automatic snapshots takes a manual one too, counted as any other.
#'
#' @param model A Keras model compiled with `optimizer = optimizer_swa(...)`
#'   or `optimizer_swag(...)` that has trained at least one step (before,
#'   its optimizer has no average to add to, and Python says so).
#'
#' @returns `model`, invisibly.
#'
#' @family SWA functions
#' @export
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05), start_averaging = NULL),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- x %*% c(1, -2, 3, 0.5)
#'
#' # Average the weights at the end of epochs 3, 4 and 5.
#' model |> fit(x, y, epochs = 2, verbose = 0)
#' for (epoch in 3:5) {
#'   model |> fit(x, y, epochs = 1, verbose = 0)
#'   swa_take_snapshot(model)
#' }
#' swa_snapshot_count(model)
#' swa_assign_averages(model)
swa_take_snapshot <- function(model) {
  optimizer <- model_swa_optimizer(model)
  optimizer$take_snapshot()
  invisible(model)
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
  start <- optimizer$start_averaging
  when <- if (is.null(start))
    paste("`start_averaging` is NULL: snapshots are taken by",
          "swa_take_snapshot() or callback_swa(start_epoch = ...)")
  else
    sprintf("the first is taken at update %d, `start_averaging`", start)
  warning(warningCondition(
    sprintf(paste0("%s: no snapshot of the weights has been averaged yet ",
                   "(%s), so %s."),
            caller, when, consequence),
    class = "kerasswa_no_snapshot"
  ))
  FALSE
}

evaluate_with_averages <- function(optimizer, model, expr, caller) {
  if (!has_snapshots(optimizer, caller,
                     "it runs with the training weights"))
    return(expr)
  # Python's use_average_vars(), entered and left by hand: on.exit() puts the
  # training weights back, bit for bit, even when `expr` fails.
  averaged <- optimizer$use_average_vars(model$variables)
  averaged$`__enter__`()
  on.exit(averaged$`__exit__`(NULL, NULL, NULL), add = TRUE)
  expr
}
