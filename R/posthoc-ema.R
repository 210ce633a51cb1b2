#' Post-hoc EMA: choose the length of the average after training
#'
#' An optimizer that wraps a Keras 3 optimizer as [optimizer_swa()] does
#' and keeps, beside the weights it trains, one power-function EMA (see
#' [averaging_power_ema()]) for each relative width in `sigma_rels`. Saved
#' now and then during training by [callback_posthoc_ema_checkpoint()],
#' they let [posthoc_ema()] rebuild after training the power EMA of any
#' width, so that the length of the average is chosen on validation data
#' instead of guessed before training (Karras et al., 2024, "Analyzing and
#' Improving the Training Dynamics of Diffusion Models", EDM2, who keep
#' widths 0.05 and 0.10).
#'
#' @inheritParams optimizer_swa
#' @param sigma_rels The relative widths of the power EMAs kept: a numeric
#'   vector of distinct numbers in (0, `sqrt(1/12)` = 0.2887]. Each costs
#'   one copy of the trainable weights.
#' @param start_averaging The number of updates before the first snapshot,
#'   a whole number >= 0, or `NULL` for snapshots taken only by
#'   [swa_take_snapshot()], as in [optimizer_swa()].
#' @param average_period The number of updates between two snapshots, a
#'   whole number >= 1. The default, `1`, averages every update, as EDM2
#'   does.
#' @param name The name of the optimizer, and the prefix of the names of
#'   its variables: a string, or `NULL` (the default) for a name of its own
#'   (`"post_hoc_ema"`, then `"post_hoc_ema_1"`, ...).
#' @param ... Other arguments of [optimizer_swa()], by name:
#'   `sequential_update`, `clipnorm`, `clipvalue`, `global_clipnorm`,
#'   `decay`, `lr` and `learning_rate`, with the same meaning and checks.
#'   `averaging` is not one of them: the EMAs are the power EMAs of
#'   `sigma_rels`.
#'
#' @details
#' Everything that works on an SWA model works on this one:
#' [swa_assign_averages()], [with_swa_weights()], [swa_snapshot_count()],
#' saving and loading. The average they use is the power EMA of the first
#' of `sigma_rels`.
#'
#' Time is counted in snapshots: with `start_averaging = m` and
#' `average_period = k`, a save after `u` updates holds the power EMAs of
#' `(u - m - 1) %/% k + 1` snapshots (0 when `u <= m`), and `sigma_rel` is
#' relative to the averaged part of the run. With the defaults, snapshots
#' and updates are the same.
#'
#' @returns The Python `kerasswa.PostHocEMA` optimizer object, to pass as
#'   `optimizer` to keras3's `compile()`.
#'
#' @family post-hoc EMA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_posthoc_ema(optimizer_sgd(0.05),
#'                                     sigma_rels = c(0.05, 0.10)),
#'   loss = "mse"
#' )
#' model$optimizer$gammas
#'
#' # Train, saving the power EMAs every 4 updates (and at the end) to a
#' # folder: 64 updates (64 samples, batches of 8, 8 epochs), 16 saves.
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' folder <- tempfile("profiles")
#' model |> fit(x, y, batch_size = 8, epochs = 8, verbose = 0,
#'              callbacks = list(callback_posthoc_ema_checkpoint(folder,
#'                                                               save_freq = 4)))
#' length(list.files(folder))
#'
#' # The power EMA of width 0.15, rebuilt into the model; the relative error
#' # of its profile is returned.
#' posthoc_ema(model, folder, sigma_rel = 0.15)
optimizer_posthoc_ema <- function(optimizer,
                                  sigma_rels = c(0.05, 0.10),
                                  start_averaging = 0,
                                  average_period = 1,
                                  ...,
                                  name = NULL) {
  dots <- list(...)
  if ("averaging" %in% names(dots))
    stop_kerasswa(
      sprintf(paste0("optimizer_posthoc_ema() keeps one power EMA for each ",
                     "of `sigma_rels`: it takes no `averaging` (use ",
                     "optimizer_swa() for one average).\n",
                     "Received: averaging = %s"),
              describe_value(dots$averaging)),
      call = sys.call()
    )
  dots <- check_dots(dots, allowed = c(
    "sequential_update", "clipnorm", "clipvalue", "global_clipnorm", "decay",
    "lr", "learning_rate"
  ))
  # Quoted, so that the call passed for the errors is not evaluated again.
  args <- do.call(swa_arguments, quote = TRUE, c(
    list(optimizer, start_averaging, average_period, name),
    dots,
    list(call = sys.call())
  ))
  args$averaging <- NULL
  args$sigma_rels <- as_sigma_rels(sigma_rels)
  do.call(swa_python()$PostHocEMA, args)
}

#' Callback that saves the power EMAs of a post-hoc EMA optimizer
#'
#' A Keras callback for a model compiled with [optimizer_posthoc_ema()]:
#' every `save_freq` batches (or at the end of every epoch), and at the end
#' of training, it writes the optimizer's power EMAs with their snapshot
#' count to a new file in `folder`, for [posthoc_ema()]. Saves before the
#' first snapshot are skipped.
#'
#' Each save is a NumPy `.npz` file named `posthoc-ema-<snapshot
#' count>.npz`, holding one array per power EMA and trainable weight and a
#' versioned JSON description (documented in the Python module
#' `kerasswa.posthoc`); a file is written under a temporary name and then
#' renamed, so another process can read the folder while training goes on.
#' Each save costs `length(sigma_rels)` copies of the weights on disk; use
#' [posthoc_ema_error()] before training to choose how often to save.
#'
#' @param folder The folder of the saves (created when training starts).
#' @param save_freq `"epoch"` (save at the end of each epoch) or a whole
#'   number >= 1 (save every that many batches).
#' @param verbose `0` (silent) or `1` (a line per save).
#'
#' @returns A Keras callback (the Python `kerasswa.PostHocEMACheckpoint`),
#'   for the `callbacks` of `fit()`.
#'
#' @family post-hoc EMA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_posthoc_ema(optimizer_sgd(0.05)),
#'                  loss = "mse")
#' x <- matrix(runif(128), ncol = 4)
#' y <- matrix(rowSums(x))
#' folder <- tempfile("profiles")
#' model |> fit(x, y, batch_size = 8, epochs = 3, verbose = 0,
#'              callbacks = list(callback_posthoc_ema_checkpoint(folder)))
#' list.files(folder)  # after 4, 8 and 12 snapshots
callback_posthoc_ema_checkpoint <- function(folder, save_freq = "epoch",
                                            verbose = 0) {
  args <- list(
    folder = path.expand(check_string(folder)),
    save_freq = as_save_freq(save_freq),
    verbose = as_verbose(verbose)
  )
  do.call(swa_python()$PostHocEMACheckpoint, args)
}

#' Rebuild a power EMA of any width from saved ones
#'
#' `posthoc_ema()` reads the power EMAs that
#' [callback_posthoc_ema_checkpoint()] saved to `folder`, finds the
#' combination of them that best approximates the power EMA of width
#' `sigma_rel` (or exponent `gamma`) at `snapshot_count` snapshots, and
#' puts that combination of the saved weights into the model's trainable
#' weights. `posthoc_ema_error()` gives, before training, how well a
#' planned schedule of saves will rebuild a width.
#'
#' A power EMA of exponent `g` after `t` snapshots weighs snapshot `tau` by
#' the integral of the profile `(g + 1) s^g / t^(g + 1)` over
#' `[tau - 1, tau]`. The inner product of two such profiles ending at
#' `t_a <= t_b` has the closed form
#' `(g_a + 1)(g_b + 1) / ((g_a + g_b + 1) t_b) * (t_a / t_b)^g_b`; the
#' combination solves the least-squares problem they define over the saves
#' made no later than `snapshot_count` (in double precision), scaled so
#' that its weights sum to 1. Its relative L2 error,
#' `||sum_i x_i p_i - p|| / ||p||`, bounds the error of the rebuilt
#' snapshot weights the same way.
#'
#' @param model A Keras model whose trainable weights have the shapes of
#'   the saved ones, in the same order: the model trained, or the same
#'   architecture built anew (in another R session, say). Its non-trainable
#'   variables are left as they are, unless the saves hold their averages
#'   (`callback_swa(average_non_trainable = TRUE)` during training): then
#'   the same combination of them becomes its batch-normalization
#'   statistics, and its integer and boolean ones take their value of the
#'   latest save used.
#' @param folder The folder of the saves.
#' @param sigma_rel The relative width of the power EMA wanted: for
#'   `posthoc_ema()` a number in (0, `sqrt(1/12)` = 0.2887]; for
#'   `posthoc_ema_error()` a numeric vector of them.
#' @param gamma The exponent of the power EMA wanted, a number >= 0,
#'   instead of `sigma_rel`. Give one of the two.
#' @param snapshot_count `NULL` for the time of the last save, or the time
#'   of the power EMA wanted, in snapshots: a whole number >= 1, no later
#'   than the last save.
#' @param total_updates The planned length of training, in updates: a whole
#'   number >= 1.
#' @param save_every The planned number of updates between two saves (a
#'   save is also made at the end): a whole number >= 1.
#' @param sigma_rels,start_averaging,average_period The arguments of
#'   [optimizer_posthoc_ema()] planned.
#'
#' @returns `posthoc_ema()`: the relative error of the rebuilt profile (0
#'   when that width was saved at that time), after assigning the weights.
#'   `posthoc_ema_error()`: the relative error for each `sigma_rel`.
#'
#' @family post-hoc EMA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' # How well do saves every 10,000 or 50,000 of 500,000 updates rebuild
#' # widths 0.03 to 0.2 from the power EMAs of widths 0.05 and 0.10?
#' widths <- c(0.03, 0.07, 0.15, 0.2)
#' errors <- rbind(every_10000 = posthoc_ema_error(widths, 5e5, save_every = 1e4),
#'                 every_50000 = posthoc_ema_error(widths, 5e5, save_every = 5e4))
#' colnames(errors) <- widths
#' round(errors, 4)
#'
#' # A run that saves every 4 updates.
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_posthoc_ema(optimizer_sgd(0.05)),
#'                  loss = "mse")
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' folder <- tempfile("profiles")
#' model |> fit(x, y, batch_size = 8, epochs = 8, verbose = 0,
#'              callbacks = list(callback_posthoc_ema_checkpoint(folder,
#'                                                               save_freq = 4)))
#'
#' # Choose the width on held-out data: each candidate rebuilt in turn.
#' x_valid <- matrix(runif(64), ncol = 4)
#' y_valid <- matrix(rowSums(x_valid))
#' sapply(c(0.05, 0.1, 0.2), function(width) {
#'   posthoc_ema(model, folder, sigma_rel = width)
#'   evaluate(model, x_valid, y_valid, verbose = 0)[["loss"]]
#' })
posthoc_ema <- function(model, folder, sigma_rel = NULL, gamma = NULL,
                        snapshot_count = NULL) {
  if (!is_keras_model(model))
    stop_bad_argument("model", model, "a Keras model", sys.call())
  folder <- path.expand(check_string(folder))
  if (is.null(sigma_rel) == is.null(gamma))
    stop_kerasswa(
      sprintf(paste0("Give exactly one of `sigma_rel` and `gamma`.\n",
                     "Received: sigma_rel = %s, gamma = %s"),
              describe_value(sigma_rel), describe_value(gamma)),
      call = sys.call()
    )
  args <- list(
    model = model,
    folder = folder,
    sigma_rel = if (!is.null(sigma_rel)) as_sigma_rel(sigma_rel),
    gamma = if (!is.null(gamma)) as_rate(gamma, allow_zero = TRUE),
    snapshot_count = as_optional_count(snapshot_count, minimum = 1L)
  )
  do.call(swa_python()$posthoc_ema, args)
}

#' @rdname posthoc_ema
#' @export
posthoc_ema_error <- function(sigma_rel, total_updates, save_every,
                              sigma_rels = c(0.05, 0.10),
                              start_averaging = 0, average_period = 1) {
  call <- sys.call()
  if (!is.numeric(sigma_rel) || length(sigma_rel) == 0L)
    stop_bad_argument("sigma_rel", sigma_rel, paste(
      "a numeric vector of relative widths in (0, sqrt(1/12) = 0.2887]"),
      call)
  widths <- vapply(seq_along(sigma_rel), function(i)
    as_sigma_rel(sigma_rel[[i]], arg = sprintf("sigma_rel[%d]", i),
                 call = call), 0)
  # Counts beyond R's integers (long runs) go to Python as whole doubles.
  total_updates <- as_whole_number(total_updates, minimum = 1)
  save_every <- as_whole_number(save_every, minimum = 1)
  args <- list(
    sigma_rels = as_sigma_rels(sigma_rels),
    start_averaging = as_whole_number(start_averaging, minimum = 0),
    average_period = as_count(average_period, minimum = 1L)
  )
  python <- swa_python()
  vapply(widths, function(width)
    do.call(python$posthoc_ema_error,
            c(list(width, total_updates, save_every), args)), 0)
}

# The widths of optimizer_posthoc_ema(): a non-empty numeric vector of
# distinct widths, as a list (a Python list, not a NumPy array).
as_sigma_rels <- function(x, arg = deparse(substitute(x)),
                          call = sys.call(-1L)) {
  if (!is.numeric(x) || length(x) == 0L || anyNA(x) || anyDuplicated(x) ||
      any(x <= 0) || any(x > max_sigma_rel * (1 + 1e-12)))
    stop_bad_argument(arg, x, paste(
      "a numeric vector of distinct numbers in (0, sqrt(1/12) = 0.2887],",
      "the relative widths of the power EMAs kept"), call)
  as.list(as.double(x))
}

# A whole number that may exceed R's integers, as a double.
as_whole_number <- function(x, minimum, arg = deparse(substitute(x)),
                            call = sys.call(-1L)) {
  if (!is_single_number(x) || x != trunc(x) || x < minimum || x > 2^53)
    stop_bad_argument(arg, x,
                      sprintf("a single whole number >= %d", minimum), call)
  as.double(x)
}
