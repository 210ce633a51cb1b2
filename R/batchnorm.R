#' Recompute the batch-normalization statistics of a model
#'
#' Sets the moving mean and variance of every batch-normalization layer of
#' `model` to the values that its current weights give on `data`. Call it
#' after [swa_assign_averages()]: the statistics left by training belong to
#' the last weights, not to their average. It is the counterpart of
#' PyTorch's `torch.optim.swa_utils.update_bn()`.
#'
#' @param model A built Keras model, such as one trained with
#'   [optimizer_swa()].
#' @param data The inputs to pass through the model, usually the training
#'   inputs: an R array or matrix of finite numbers (a list of them for a
#'   model with several inputs), or a Python object: a NumPy array, a
#'   `tf.data.Dataset`, a `keras.utils.PyDataset`, or an iterable of batches.
#'   Of batches given as `(x, y)` or `(x, y, sample_weight)`, only `x` is
#'   used.
#' @param batch_size The batch size for array `data`, a whole number >= 1.
#'   Ignored for data that comes in batches.
#' @param steps `NULL` to use all of `data`, or the number of batches to use
#'   (a whole number >= 1; needed for an endless generator).
#' @param verbose `0` (silent) or `1` (a progress bar).
#'
#' @details
#' `swa_update_bn()` makes one pass over `data` in training mode. Each
#' `BatchNormalization` layer computes the mean and the (biased) variance of
#' each batch as usual; its moving mean and moving variance become the
#' average of those batch statistics over the pass, each batch weighted by
#' its number of samples, whatever the layer's `momentum`. With array data,
#' the moving mean is the mean of the inputs of the layer over all of
#' `data`; the moving variance is the weighted mean of the batch variances.
#'
#' Layers nested in sub-models are included. Frozen layers
#' (`trainable = FALSE`) are left alone, and so are the trainable weights
#' and the layers' `momentum`. Layers that behave differently in training,
#' such as dropout, run as in training. A model without a trainable
#' batch-normalization layer is returned unchanged, with a warning.
#'
#' [callback_swa()] with `bn_data` does the same at the end of `fit()`.
#'
#' @returns `model`, invisibly, with its batch-normalization statistics
#'   updated in place.
#'
#' @family SWA functions
#' @export
#'
#' @template swa-example-bn-model
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#'
#' history <- model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
#' swa_assign_averages(model)
#' swa_update_bn(model, x)
#'
#' # The first layer normalizes `x`: its moving mean is now the mean of `x`.
#' moving_mean <- as.numeric(get_layer(model, index = 1)$moving_mean)
#' all.equal(moving_mean, colMeans(x), tolerance = 1e-6)
swa_update_bn <- function(model, data, batch_size = 32, steps = NULL,
                          verbose = 0) {
  if (!is_keras_model(model))
    stop_bad_argument("model", model, "a Keras model", sys.call())
  args <- list(
    model = model,
    data = as_model_data(data),
    batch_size = as_count(batch_size, minimum = 1L),
    steps = as_optional_count(steps, minimum = 1L),
    verbose = as_verbose(verbose)
  )
  with_python_warnings(do.call(swa_python()$update_bn, args))
  invisible(model)
}

# Python's warnings (`warnings.warn()`) reach R as text on stderr at best,
# which no R code can catch: during `expr` they are recorded, and then given
# again as R warnings from the caller's call.
with_python_warnings <- function(expr, call = sys.call(-1L)) {
  python_warnings <- reticulate::import("warnings", convert = FALSE)
  catcher <- python_warnings$catch_warnings(record = TRUE)
  recorded <- catcher$`__enter__`()
  entered <- TRUE
  on.exit(if (entered) catcher$`__exit__`(NULL, NULL, NULL), add = TRUE)
  python_warnings$simplefilter("always")
  # Warnings for developers (Keras's own use of NumPy, say) stay quiet, as
  # Python's default filters keep them.
  python_warnings$simplefilter(
    "ignore", category = reticulate::import_builtins()$DeprecationWarning
  )
  value <- expr
  messages <- vapply(reticulate::py_to_r(recorded),
                     function(w) reticulate::py_str(w$message), "")
  catcher$`__exit__`(NULL, NULL, NULL)
  entered <- FALSE
  for (message in messages)
    warning(warningCondition(message, class = "kerasswa_python_warning",
                             call = call))
  value
}
