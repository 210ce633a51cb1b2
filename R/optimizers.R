#' Stochastic Weight Averaging optimizer
#'
#' Wraps a Keras 3 optimizer so that, beside the weights it trains, it keeps
#' the running mean of the weights along the training trajectory: Stochastic
#' Weight Averaging (SWA; Izmailov et al., 2018, "Averaging Weights Leads to
#' Wider Optima and Better Generalization"). The averaged model usually sits
#' in a flatter region of the loss surface and generalizes better than the
#' last weights.
#'
#' @param optimizer The original optimizer that will be used to compute and
#'   apply the gradients: a Keras 3 optimizer object, such as keras3's
#'   `optimizer_sgd()` or `optimizer_adam()`, or the name of one, such as
#'   `"sgd"` or `"adam"`. An object is used, not copied: `learning_rate` and
#'   `decay` change its learning rate.
#' @param start_averaging The number of steps (updates) before averaging
#'   starts: a whole number >= 0. The first snapshot of the weights is taken
#'   at update `start_averaging`, counting the first update as update 0.
#'   `NULL` takes no snapshot automatically: snapshots are then taken when
#'   you call [swa_take_snapshot()], or by [callback_swa()] at the end of
#'   the epochs from its `start_epoch` on.
#' @param average_period The frequency of snapshots: after the first, a
#'   snapshot is taken every `average_period` updates. A whole number >= 1.
#' @param name The name of the optimizer, and the prefix of the names of
#'   its variables: a string, or `NULL` (the default) for a name of its own,
#'   as Keras gives its optimizers (`"swa"`, then `"swa_1"`, ...), so that
#'   two SWA optimizers in one model have distinct variables and the model
#'   saves. (tfaddons named every one `"SWA"`.)
#' @param sequential_update Whether the averaging happens after the update
#'   of the weights. `TRUE` (the default) averages the weights as the update
#'   leaves them; `FALSE` averages the weights as they were just before it.
#' @param clipnorm `NULL`, or a number > 0: each gradient is clipped to this
#'   L2 norm before the inner optimizer sees it.
#' @param clipvalue `NULL`, or a number > 0: each gradient element is clipped
#'   to `[-clipvalue, clipvalue]` before the inner optimizer sees it.
#' @param decay `NULL`, or a number >= 0: Keras 2's time-inverse decay of the
#'   inner optimizer's learning rate, which becomes
#'   `learning_rate / (1 + decay * iterations)`. `0` keeps it constant.
#' @param lr Deprecated alias of `learning_rate`, kept for code written for
#'   Keras 2 and tfaddons. Gives a deprecation warning.
#' @param averaging How the snapshots are averaged: `"mean"` (the default),
#'   their plain mean; a single number `d` in (0, 1), the decay of an
#'   exponential moving average (EMA) over the same snapshots;
#'   [averaging_ema()], an EMA whose decay warms up; or
#'   [averaging_power_ema()], the power-function EMA of EDM2. With a number
#'   `d`, the first snapshot copies the weights, and each later one makes
#'   the average `d * avg + (1 - d) * w`. An EMA kept in a buffer that starts
#'   at zero (as PyTorch's `WeightAverage` did) is pulled towards zero early
#'   on: after `n` snapshots the weights of the snapshots in it add up to
#'   `1 - d^n`, not 1, and it needs a bias correction (a division by
#'   `1 - d^n`, as in Adam). Starting from a copy of the first snapshot needs
#'   no correction: the average is a weighted mean of the snapshots from the
#'   first one on (every rule here starts so). Every rule counts snapshots,
#'   not updates, and is kept when the model is saved. To choose the length
#'   of a power EMA after training, see [optimizer_posthoc_ema()].
#' @param ... Two more arguments of the Python `SWA` class, by name:
#'   `global_clipnorm` (`NULL`, or a number > 0: all gradients together are
#'   clipped to this global norm) and `learning_rate` (`NULL`, or a number >
#'   0, a learning-rate schedule such as keras3's
#'   `learning_rate_schedule_exponential_decay()` or
#'   [learning_rate_schedule_swa()], which Keras calls with the step, or an R
#'   function of no arguments that returns the rate, which Keras calls with
#'   none; it replaces the inner optimizer's learning rate). A function that
#'   needs an argument is refused: a rate that depends on the step is a
#'   schedule. At most one of
#'   `clipnorm`, `clipvalue` and `global_clipnorm` may be given.
#'
#' @details
#' Every update is first made by the inner `optimizer`. Let `t` be the number
#' of updates made before the current one (0 for the first update),
#' `m = start_averaging` and `k = average_period`. The update is a *snapshot*
#' when `t >= m` and `(t - m) %% k == 0`. At a snapshot, each trainable
#' weight's average `avg` becomes `avg + (w - avg) / (n + 1)`, where `w` is
#' the weight and `n` the number of snapshots taken before: the average is
#' always the plain mean of the snapshots. Updates that are not snapshots do
#' no averaging work.
#'
#' The result is used like any Keras optimizer:
#' `model |> compile(optimizer = optimizer_swa(optimizer_sgd(0.01)), ...)`.
#'
#' The averaging never changes the weights being trained. Once training is
#' over, copy the averages into the model with [swa_assign_averages()]; to
#' look at the averaged model in the middle of training, use
#' [swa_evaluate()] or [with_swa_weights()].
#'
#' The rule and the arguments are those of `optimizer_swa()` in the tfaddons
#' package (`tfa.optimizers.SWA` in Python), with its defects fixed:
#' * assigning the averages before the first snapshot leaves the weights
#'   alone, with a warning, where tfaddons overwrote them with zeros;
#' * non-trainable variables, such as batch-normalization statistics, have
#'   no average and are left alone, where tfaddons failed;
#' * `lr` and `decay` take effect, where tfaddons accepted and ignored them;
#' * every argument is checked when the optimizer is created, with an error
#'   that names it, instead of failing later inside TensorFlow.
#'
#' @returns The Python `kerasswa.SWA` optimizer object, to pass as
#'   `optimizer` to keras3's `compile()`.
#'
#' @family SWA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' swa <- optimizer_swa(optimizer_sgd(0.01), start_averaging = 5,
#'                      average_period = 2)
#' swa$start_averaging
#' swa$average_period
#'
#' # Train a linear model with SWA on data made here. Its 16 updates
#' # (64 samples, batches of 8, 2 epochs) include 6 snapshots: updates 5, 7,
#' # 9, 11, 13 and 15.
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(optimizer = swa, loss = "mse")
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' history <- model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
#' swa_snapshot_count(model)
#'
#' # Keep the averaged weights as the model's weights.
#' swa_assign_averages(model)
optimizer_swa <- function(optimizer,
                          start_averaging = 0,
                          average_period = 10,
                          name = NULL,
                          sequential_update = TRUE,
                          clipnorm = NULL,
                          clipvalue = NULL,
                          decay = NULL,
                          lr = NULL,
                          averaging = "mean",
                          ...) {
  dots <- check_dots(list(...), allowed = c("global_clipnorm", "learning_rate"))
  args <- swa_arguments(
    optimizer, start_averaging, average_period, name,
    sequential_update = sequential_update, averaging = averaging,
    clipnorm = clipnorm, clipvalue = clipvalue,
    global_clipnorm = dots$global_clipnorm, decay = decay, lr = lr,
    learning_rate = dots$learning_rate, call = sys.call()
  )
  do.call(swa_python()$SWA, args)
}

# The arguments of the Python `SWA` class, checked and converted, for
# optimizer_swa() and optimizer_swag() (whose `SWAG` takes them all). All are
# checked before any is used, so that a bad value never reaches (or starts)
# Python; `call` is the exported function's call, which the errors show.
swa_arguments <- function(optimizer, start_averaging, average_period, name,
                          sequential_update = TRUE, averaging = "mean",
                          clipnorm = NULL, clipvalue = NULL,
                          global_clipnorm = NULL, decay = NULL, lr = NULL,
                          learning_rate = NULL, call) {
  if (!is.null(lr)) {
    if (!is.null(learning_rate))
      stop_kerasswa(
        sprintf(paste0("Give `learning_rate` or its deprecated alias `lr`, ",
                       "not both.\nReceived: lr = %s, learning_rate = %s"),
                describe_value(lr), describe_value(learning_rate)),
        call = call
      )
    learning_rate <- as_optional_rate(lr, call = call)
    warning(warningCondition(
      "`lr` is deprecated: use `learning_rate` instead.",
      class = "deprecatedWarning", call = call
    ))
  }
  args <- list(
    optimizer = check_optimizer(optimizer, call = call),
    start_averaging = as_optional_count(start_averaging, minimum = 0L,
                                        call = call),
    average_period = as_count(average_period, minimum = 1L, call = call),
    name = check_optional_string(name, call = call),
    sequential_update = check_flag(sequential_update, call = call),
    averaging = as_averaging(averaging, call = call),
    clipnorm = as_optional_rate(clipnorm, call = call),
    clipvalue = as_optional_rate(clipvalue, call = call),
    global_clipnorm = as_optional_rate(global_clipnorm, call = call),
    decay = as_optional_rate(decay, allow_zero = TRUE, call = call),
    learning_rate = as_learning_rate(learning_rate, call = call)
  )
  clipping <- names(Filter(Negate(is.null),
                           args[c("clipnorm", "clipvalue", "global_clipnorm")]))
  if (length(clipping) > 1L)
    stop_kerasswa(
      sprintf(paste0("Give at most one of `clipnorm`, `clipvalue` and ",
                     "`global_clipnorm`.\nReceived: %s"),
              paste(sprintf("%s = %s", clipping,
                            vapply(args[clipping], describe_value, "")),
                    collapse = ", ")),
      call = call
    )
  args
}
