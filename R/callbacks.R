#' Callback that finishes training with the averaged model
#'
#' A Keras callback for a model compiled with [optimizer_swa()]. At the end
#' of `fit()` it puts the averaged weights into the model, with
#' batch-normalization statistics that match them, so that the model `fit()`
#' leaves behind is the SWA model. Given `validation_data`, it also scores
#' the averaged model at the end of every epoch.
#'
#' @param bn_data `NULL`, or the inputs over which [swa_update_bn()]
#'   recomputes the batch-normalization statistics for the averaged weights,
#'   usually the training inputs: an R array or matrix of finite numbers (a
#'   list of them for a model with several inputs), or a Python object such
#'   as a `tf.data.Dataset`. `NULL` leaves the statistics as training left
#'   them.
#' @param bn_batch_size The batch size for array `bn_data`, a whole
#'   number >= 1.
#' @param bn_steps `NULL` to use all of `bn_data`, or the number of batches
#'   of it to use, a whole number >= 1.
#' @param validation_data `NULL`, or the data to score the averaged model on
#'   at the end of every epoch: `list(x, y)` or `list(x, y, sample_weight)`.
#' @param validation_batch_size `NULL` for Keras's default, or the batch
#'   size for `validation_data`, a whole number >= 1.
#' @param finish_after_epoch `NULL` to finish at the end of `fit()`, or the
#'   epoch (counted from 1) after which to finish and stop training, a whole
#'   number >= 1.
#' @param average_non_trainable `TRUE` to average the model's non-trainable
#'   float variables (batch-normalization statistics) at the snapshots of
#'   the weights, by the optimizer's `averaging` rule, and copy its integer
#'   and boolean ones, instead of recomputing the statistics from `bn_data`
#'   (PyTorch's `use_buffers = TRUE`); see Details. Cannot be combined with
#'   `bn_data`.
#' @param verbose `0` (silent) or `1` (a progress bar for the
#'   batch-normalization pass).
#' @param start_epoch `NULL` to leave the snapshots to the optimizer, or
#'   the epoch (counted from 1, as `fit()` shows them) from which on the
#'   callback takes a snapshot of the weights at the end of every epoch, a
#'   whole number >= 1: "average the last 10 of 150 epochs" is
#'   `start_epoch = 141`. The optimizer must then take none itself: make it
#'   with `optimizer_swa(start_averaging = NULL)`, or `fit()` fails when it
#'   starts.
#'
#' @details
#' When training finishes (at the end of `fit()`, or after epoch
#' `finish_after_epoch`, which then stops training), the callback copies
#' the averages of [optimizer_swa()] into the model's weights (as
#' [swa_assign_averages()] does) and then makes the batch-normalization
#' statistics match them: with `bn_data`, recomputed by [swa_update_bn()];
#' with `average_non_trainable = TRUE`, replaced by their own averages over
#' the snapshot steps; otherwise left as they are. With no snapshot taken
#' yet, the model keeps its training weights, and Python warns.
#'
#' With `validation_data`, at the end of every epoch the callback evaluates
#' the averaged model (averaged weights and matching statistics) on it and
#' adds the results to the epoch's logs, and so to the history, under the
#' names of the model's metrics prefixed by `val_swa_`: `val_swa_loss`,
#' `val_swa_accuracy`, ... They are `NaN` for the epochs that end before
#' the first snapshot. Training is not disturbed: the training weights and
#' statistics are put back after each evaluation.
#'
#' Several `fit()` calls in a row continue one training trajectory, each
#' with a `callback_swa()` (the same object or a new one). When a later
#' `fit()` starts, the callback puts back the training weights and
#' statistics replaced at the end of the previous one (the optimizer keeps
#' a copy of them in between), and the optimizer's averages carry on, so
#' two `fit()` calls of 5 epochs end where one of 10 epochs ends. Between
#' the calls the model holds the averaged model, to evaluate or save. A
#' `fit()` without the callback trains on from the averaged weights.
#'
#' With `average_non_trainable = TRUE`, every snapshot of the weights is
#' also a snapshot of the statistics: the `n`-th one blends with the factor
#' of the `n`-th snapshot of the weights, so the statistics get the same
#' mean, EMA ([averaging_ema()]) or power EMA ([averaging_power_ema()]) as
#' the weights (with [optimizer_posthoc_ema()], one per width, saved by
#' [callback_posthoc_ema_checkpoint()] and rebuilt by [posthoc_ema()]).
#' Integer and boolean non-trainable variables (counters, random-seed
#' states) are copied at each snapshot, never averaged, and end at their
#' value of the last snapshot. A snapshot taken by [swa_take_snapshot()] or
#' by `start_epoch` includes them. The optimizer keeps these averages (one
#' more copy of the statistics per average), so `save_model()`,
#' `save_model_weights()`, `callback_model_checkpoint()` and
#' `callback_backup_and_restore()` save them with the model, and a run
#' resumed from such a file ends exactly where an uninterrupted run ends.
#'
#' The training step is unchanged: the callback works out which batches
#' end with a snapshot from the optimizer's counts, read once when `fit()`
#' starts, and reads the statistics after those batches only (with JAX, the
#' other batches cost nothing). With an optimizer that may skip an update
#' (`optimizer_loss_scale()`, inside [optimizer_swa()] or added by
#' `compile()` under the `"mixed_float16"` policy) it reads the snapshot
#' count after every batch instead, which keeps the host from running ahead
#' of a GPU; `sequential_update = FALSE` is then refused when `fit()`
#' starts. So is a model compiled with `steps_per_execution` > 1, whose
#' batches run out of the callback's sight.
#'
#' @returns The Python `kerasswa.SWACallback` object, to give to `fit()` in
#'   `callbacks = list(...)`.
#'
#' @family SWA functions
#' @export
#'
#' @template swa-example-bn-model
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#'
#' callback <- callback_swa(bn_data = x, validation_data = list(x, y))
#' history <- model |> fit(x, y, batch_size = 8, epochs = 3, verbose = 0,
#'                         callbacks = list(callback))
#'
#' # The averaged model's loss: NaN in epoch 1, before the first snapshot
#' # (update 8, the first update of epoch 2).
#' unlist(history$metrics$val_swa_loss)
#'
#' # The model now is the SWA model, and it scores the last of those.
#' model |> evaluate(x, y, verbose = 0)
#'
#' # A later fit() with the callback continues the training trajectory.
#' history <- model |> fit(x, y, batch_size = 8, epochs = 1, verbose = 0,
#'                         callbacks = list(callback))
#' swa_snapshot_count(model)
#'
#' # The statistics averaged with the weights instead, by the same EMA,
#' # and saved with the model.
#' model <- keras_model_sequential(input_shape = 4) |>
#'   layer_batch_normalization() |>
#'   layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05), average_period = 1,
#'                             averaging = averaging_ema(0.9)),
#'   loss = "mse"
#' )
#' model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0,
#'              callbacks = list(callback_swa(average_non_trainable = TRUE)))
#' file <- tempfile(fileext = ".keras")
#' save_model(model, file)
#' restored <- load_model(file)
#' unlink(file)
callback_swa <- function(bn_data = NULL,
                         bn_batch_size = 32,
                         bn_steps = NULL,
                         validation_data = NULL,
                         validation_batch_size = NULL,
                         finish_after_epoch = NULL,
                         average_non_trainable = FALSE,
                         verbose = 0,
                         start_epoch = NULL) {
  if (!is.null(bn_data) && isTRUE(average_non_trainable))
    stop_kerasswa(
      sprintf(paste0("Give `bn_data` (recompute the batch-normalization ",
                     "statistics) or `average_non_trainable = TRUE` ",
                     "(average them), not both.\nReceived: bn_data = %s, ",
                     "average_non_trainable = TRUE"),
              describe_value(bn_data)),
      call = sys.call()
    )
  args <- list(
    bn_data = if (!is.null(bn_data)) as_model_data(bn_data),
    bn_batch_size = as_count(bn_batch_size, minimum = 1L),
    bn_steps = as_optional_count(bn_steps, minimum = 1L),
    validation_data = as_validation_data(validation_data),
    validation_batch_size = as_optional_count(validation_batch_size,
                                              minimum = 1L),
    finish_after_epoch = as_optional_count(finish_after_epoch, minimum = 1L),
    average_non_trainable = check_flag(average_non_trainable),
    verbose = as_verbose(verbose),
    start_epoch = as_optional_count(start_epoch, minimum = 1L)
  )
  # Python wants a tuple, which only Python can make: made once all is checked.
  if (is.list(args$validation_data))
    args$validation_data <- do.call(reticulate::tuple,
                                    unname(args$validation_data))
  do.call(swa_python()$SWACallback, args)
}
