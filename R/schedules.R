#' Learning-rate schedule for Stochastic Weight Averaging
#'
#' The learning rate of the SWA recipe: the usual rate until averaging
#' starts, then a constant (or cyclic) SWA rate while [optimizer_swa()]
#' averages the weights. Give it as the `learning_rate` of the optimizer
#' that `optimizer_swa()` wraps, with the same `start_averaging`.
#'
#' @param base_learning_rate The learning rate before averaging starts: a
#'   number > 0, or a Keras learning-rate schedule (such as keras3's
#'   `learning_rate_schedule_cosine_decay()`), evaluated at the same step.
#' @param swa_learning_rate The learning rate while averaging, a number > 0.
#' @param start_averaging The step where averaging starts, a whole
#'   number >= 0: the `start_averaging` of [optimizer_swa()].
#' @param anneal_steps The number of steps over which the rate goes from
#'   the base rate to `swa_learning_rate`, a whole number >= 0. `0` switches
#'   at once. Cannot be combined with `cycle_length`.
#' @param anneal_strategy How the rate goes down over `anneal_steps`:
#'   `"cos"` (half a cosine wave) or `"linear"`.
#' @param cycle_length `NULL` for a constant SWA rate, or the length of the
#'   cycles of a cyclic schedule, a whole number >= 1 (usually the
#'   `average_period` of [optimizer_swa()]).
#' @param name `NULL`, or a name for the schedule.
#'
#' @details
#' The step is the optimizer's update count, 0 for the first update, as for
#' every Keras schedule. Let `m = start_averaging`, `b(t)` the base rate at
#' step `t` and `s = swa_learning_rate`.
#' * Before step `m` the rate is `b(t)`.
#' * From step `m` on, with `anneal_steps = a > 0`, the rate goes from
#'   `b(m)` to `s` over `a` steps: at step `t`, with `p = (t - m) / a`
#'   (at most 1), it is `s + (b(m) - s) * (1 + cos(pi * p)) / 2` (`"cos"`)
#'   or `s + (b(m) - s) * (1 - p)` (`"linear"`). After that, and at once
#'   when `a = 0`, it stays `s`. This is PyTorch's `SWALR` schedule.
#' * With `cycle_length = c`, the averaging phase is cyclic, as in the SWA
#'   paper: in each cycle the rate falls linearly from `b(m)` to `s`,
#'   reaching `s` at the steps `m`, `m + c`, `m + 2c`, ...; with
#'   `c = average_period`, those are the steps where SWA takes its
#'   snapshots.
#'
#' The schedule is a Keras `LearningRateSchedule`: it is saved with the
#' model and restored by `load_model()` once kerasswa is loaded, and it can
#' be called with a step to see the rate there.
#'
#' @returns The Python `kerasswa.SWALearningRateSchedule` object, to give as
#'   the `learning_rate` of a Keras optimizer.
#'
#' @family SWA functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' # The rate at given steps (a schedule called with a step gives a tensor).
#' rates <- function(schedule, steps) {
#'   sapply(steps, function(step) as.array(op_convert_to_numpy(schedule(step))))
#' }
#'
#' # 0.1 for 10 steps, then down to 0.01 along a cosine over 4 steps.
#' schedule <- learning_rate_schedule_swa(0.1, 0.01, start_averaging = 10,
#'                                        anneal_steps = 4)
#' rates(schedule, c(0, 9, 10, 12, 14, 100))
#'
#' # A cyclic schedule whose lowest rates fall on the snapshots.
#' cyclic <- learning_rate_schedule_swa(0.05, 0.01, start_averaging = 6,
#'                                      cycle_length = 4)
#' rates(cyclic, 5:14)
#'
#' # In the recipe, the schedule and the averaging start at the same step.
#' optimizer <- optimizer_swa(
#'   optimizer_sgd(learning_rate = cyclic, momentum = 0.9),
#'   start_averaging = 6, average_period = 4
#' )
learning_rate_schedule_swa <- function(base_learning_rate,
                                       swa_learning_rate,
                                       start_averaging,
                                       anneal_steps = 0,
                                       anneal_strategy = c("cos", "linear"),
                                       cycle_length = NULL,
                                       name = NULL) {
  if (!is_learning_rate_schedule(base_learning_rate))
    base_learning_rate <- as_rate(base_learning_rate, expected = paste(
      "a Keras learning-rate schedule, or a single finite number"
    ))
  args <- list(
    base_learning_rate = base_learning_rate,
    swa_learning_rate = as_rate(swa_learning_rate),
    start_averaging = as_count(start_averaging, minimum = 0L),
    anneal_steps = as_count(anneal_steps, minimum = 0L),
    anneal_strategy = match_choice(anneal_strategy),
    cycle_length = as_optional_count(cycle_length, minimum = 1L),
    name = check_optional_string(name)
  )
  if (!is.null(args$cycle_length) && args$anneal_steps > 0L)
    stop_kerasswa(
      sprintf(paste0("Give `anneal_steps` or `cycle_length`, not both: a ",
                     "cyclic schedule falls to `swa_learning_rate` in ",
                     "every cycle.\nReceived: anneal_steps = %s, ",
                     "cycle_length = %s"),
              describe_value(anneal_steps), describe_value(cycle_length)),
      call = sys.call()
    )
  do.call(swa_python()$SWALearningRateSchedule, args)
}

is_learning_rate_schedule <- function(x) {
  inherits(x, "python.builtin.object") &&
    any(grepl("^keras\\.(src\\.)?optimizers\\.schedules\\..*LearningRateSchedule$",
              class(x)))
}
