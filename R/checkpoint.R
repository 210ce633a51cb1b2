#' Save the averaged model during training
#'
#' A Keras callback that saves the model as [keras3::callback_model_checkpoint()]
#' does, with the same arguments and the same choice of when to save, but
#' writes the model with the weights averaged by its [optimizer_swa()] (or
#' [optimizer_swag()]) optimizer instead of the training weights. The
#' successor of `tfaddons::callback_average_model_checkpoint()`
#' (`tfa.callbacks.AverageModelCheckpoint`).
#'
#' Training is not disturbed: after each save the model holds, bit for bit,
#' the weights it held before, unless `update_weights = TRUE`. A full `.keras`
#' file also holds the optimizer with its averages and snapshot count intact:
#' [keras3::load_model()] gives the averaged model, ready to train on from the
#' averages. Before the first snapshot there is no average: nothing is saved,
#' and one warning says so.
#'
#' To keep the best averaged model, put [callback_swa()] with
#' `validation_data` before this callback in the `callbacks` list and monitor
#' one of the `val_swa_*` scores it logs (`NaN` before the first snapshot,
#' which never counts as an improvement).
#'
#' @param filepath Where to save: a path ending in `.keras` (the whole model)
#'   or, with `save_weights_only = TRUE`, in `.weights.h5`. It may hold
#'   formatting options filled from the epoch and the logs, such as
#'   `"swa-{epoch:02d}.keras"`.
#' @param monitor The name of the logged metric that `save_best_only`
#'   compares, such as `"val_swa_loss"`.
#' @param verbose `0` (silent) or `1` (a message at each save).
#' @param save_best_only `TRUE` to save only when `monitor` improves on the
#'   best value seen so far.
#' @param save_weights_only `TRUE` to save the weights only (`.weights.h5`).
#' @param mode Whether `monitor` improves by going down (`"min"`) or up
#'   (`"max"`); `"auto"` infers it from the metric's name (for `val_swa_*`,
#'   from the metric behind it).
#' @param save_freq `"epoch"` (save at the end of each epoch) or a whole
#'   number >= 1 (save every that many batches).
#' @param initial_value_threshold `NULL`, or a number that the first value of
#'   `monitor` must beat to be saved (with `save_best_only = TRUE`).
#' @param update_weights `TRUE` to assign the averages to the model's weights
#'   for good each time a file is written, and train on from them (as
#'   tfaddons did); `FALSE` (the default) leaves the model as it was.
#' @param bn_data `NULL`, or the inputs (usually the training inputs) from
#'   which the batch-normalization statistics of the saved model are
#'   recomputed for the averaged weights (see [swa_update_bn()]).
#' @param bn_batch_size The batch size of the pass over `bn_data`.
#'
#' @returns A Keras callback (the Python `kerasswa.SWAModelCheckpoint`), for
#'   the `callbacks` of `fit()`.
#'
#' @family SWA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' x <- matrix(runif(256), ncol = 4)
#' y <- x %*% c(1, -2, 3, 0.5)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05), start_averaging = 4,
#'                             average_period = 2),
#'   loss = "mse"
#' )
#' path <- tempfile(fileext = ".keras")
#' model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0,
#'              callbacks = list(callback_swa_model_checkpoint(path)))
#'
#' # The file holds the averaged model: 6 snapshots (updates 4, 6, ..., 14).
#' saved <- load_model(path)
#' swa_snapshot_count(saved)
callback_swa_model_checkpoint <- function(filepath,
                                          monitor = "val_loss",
                                          verbose = 0,
                                          save_best_only = FALSE,
                                          save_weights_only = FALSE,
                                          mode = c("auto", "min", "max"),
                                          save_freq = "epoch",
                                          initial_value_threshold = NULL,
                                          update_weights = FALSE,
                                          bn_data = NULL,
                                          bn_batch_size = 32) {
  args <- list(
    filepath = path.expand(check_string(filepath)),
    monitor = check_string(monitor),
    verbose = as_verbose(verbose),
    save_best_only = check_flag(save_best_only),
    save_weights_only = check_flag(save_weights_only),
    mode = match_choice(mode),
    save_freq = as_save_freq(save_freq),
    initial_value_threshold = as_optional_number(initial_value_threshold),
    update_weights = check_flag(update_weights),
    bn_data = if (!is.null(bn_data)) as_model_data(bn_data),
    bn_batch_size = as_count(bn_batch_size, minimum = 1L)
  )
  do.call(swa_python()$SWAModelCheckpoint, args)
}

# "epoch", or a number of batches.
as_save_freq <- function(x, arg = deparse(substitute(x)), call = sys.call(-1L)) {
  if (identical(x, "epoch"))
    return(x)
  if (!is_single_number(x) || x != trunc(x) || x < 1 ||
      x > .Machine$integer.max)
    stop_bad_argument(arg, x, "\"epoch\" or a single whole number >= 1", call)
  as.integer(x)
}

as_optional_number <- function(x, arg = deparse(substitute(x)),
                               call = sys.call(-1L)) {
  if (is.null(x))
    return(NULL)
  if (!is_single_number(x))
    stop_bad_argument(arg, x, "NULL or a single finite number", call)
  as.double(x)
}
