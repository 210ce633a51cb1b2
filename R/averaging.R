#' Averaging rules: an EMA that warms up, and the power-function EMA
#'
#' What to give [optimizer_swa()] as `averaging`, beside `"mean"` (the plain
#' mean of the snapshots, SWA) and a single number `d` (an exponential
#' moving average of fixed decay `d`). Named after the argument they fill,
#' as keras3 names `regularizer_l2()` after `kernel_regularizer`.
#'
#' * `averaging_ema()`: an exponential moving average (EMA) whose decay
#'   warms up, as the EMAs of timm, ema-pytorch and diffusers do. A fixed
#'   decay such as 0.9999 makes an average dominated for a long time by its
#'   first snapshots; this one starts short and lengthens. The snapshot that
#'   follows `n` snapshots (`n = 0, 1, 2, ...`) makes the average
#'   `decay_n * avg + (1 - decay_n) * w`, with `decay_0 = 0` (the first
#'   snapshot is copied) and, from `n = 1` on,
#'   `decay_n = max(min(decay, 1 - (1 + n / inv_gamma)^(-power)), min_decay)`.
#'   With the defaults `decay_n` is 0.37 at `n = 1`, 0.99 at 1,000 and 0.999
#'   at 31,600 snapshots.
#' * `averaging_power_ema()`: the power-function EMA of Karras et al. (2024,
#'   "Analyzing and Improving the Training Dynamics of Diffusion Models",
#'   EDM2). After `t` snapshots, snapshot `tau` carries the weight
#'   `(tau/t)^(gamma+1) - ((tau-1)/t)^(gamma+1)`: a profile of the same
#'   shape whatever the length of the run, of relative width
#'   `sigma_rel = sqrt((gamma+1) / ((gamma+2)^2 (gamma+3)))`. `sigma_rel =
#'   0.05` is `gamma = 16.97`, `0.10` is `6.94`; `gamma = 0` is the plain
#'   mean. The `n`-th snapshot blends in with factor
#'   `1 - (1 - 1/n)^(gamma+1)`, computed as
#'   `-expm1((gamma+1) * log1p(-1/n))`, which stays accurate in float32 at
#'   ten million snapshots.
#'
#' Both count snapshots, not updates: with `average_period = k` the rule
#' describes the same profile as with `k = 1`, sampled every `k` updates
#' (`decay` is a decay per snapshot). Neither costs memory or time beyond
#' `"mean"`, and both are saved with the model.
#'
#' @param decay The largest decay, reached once the warm-up passes it: a
#'   number in (0, 1).
#' @param min_decay The smallest decay after the first snapshot: a number in
#'   `[0, decay]`.
#' @param inv_gamma How many snapshots the warm-up takes to get going (the
#'   `n / inv_gamma` of the formula): a number > 0; larger is slower.
#' @param power How fast the decay grows: a number > 0. `2/3`, the default,
#'   suits long runs (0.999 after 31,600 snapshots), `3/4` shorter ones
#'   (0.999 after 10,000).
#' @param sigma_rel The relative width of the power-function profile: a
#'   number in (0, `sqrt(1/12)` = 0.2887].
#' @param gamma The exponent of the profile, a number >= 0, instead of
#'   `sigma_rel`. Give one of the two.
#'
#' @returns A Python averaging rule (`kerasswa.EMA` or `kerasswa.PowerEMA`),
#'   to give as `averaging` to [optimizer_swa()]. The power EMA's `$gamma`
#'   and `$sigma_rel` give both forms of its width.
#'
#' @family averaging rules
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' rule <- averaging_power_ema(sigma_rel = 0.10)
#' rule$gamma
#' averaging_power_ema(gamma = 0)$sigma_rel  # the plain mean: sqrt(1/12)
#'
#' # A linear model whose weights are averaged by the power EMA at every
#' # update (16 updates: 64 samples, batches of 8, 2 epochs).
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05), average_period = 1,
#'                             averaging = rule),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
#' swa_evaluate(model, x, y, verbose = 0)
#'
#' # An EMA that warms up to a decay of 0.99 per snapshot.
#' optimizer_swa(optimizer_adam(), average_period = 1,
#'               averaging = averaging_ema(0.99))$averaging
averaging_ema <- function(decay = 0.9999, min_decay = 0, inv_gamma = 1,
                          power = 2 / 3) {
  decay <- as_open_fraction(decay)
  if (!is_single_number(min_decay) || min_decay < 0 || min_decay > decay)
    stop_bad_argument("min_decay", min_decay,
                      sprintf("a single number in [0, decay] = [0, %s]",
                              format(decay)),
                      sys.call())
  args <- list(
    decay = decay,
    min_decay = as.double(min_decay),
    inv_gamma = as_rate(inv_gamma),
    power = as_rate(power)
  )
  do.call(swa_python()$EMA, args)
}

#' @rdname averaging_ema
#' @export
averaging_power_ema <- function(sigma_rel = NULL, gamma = NULL) {
  if (is.null(sigma_rel) == is.null(gamma))
    stop_kerasswa(
      sprintf(paste0("Give exactly one of `sigma_rel` and `gamma`.\n",
                     "Received: sigma_rel = %s, gamma = %s"),
              describe_value(sigma_rel), describe_value(gamma)),
      call = sys.call()
    )
  args <- if (!is.null(sigma_rel))
    list(sigma_rel = as_sigma_rel(sigma_rel))
  else
    list(gamma = as_rate(gamma, allow_zero = TRUE))
  do.call(swa_python()$PowerEMA, args)
}

# The largest relative width of a power-function profile (gamma = 0).
max_sigma_rel <- sqrt(1 / 12)

as_sigma_rel <- function(x, arg = deparse(substitute(x)),
                         call = sys.call(-1L)) {
  # A hair above sqrt(1/12) is that value rounded, as Python reads it.
  if (!is_single_number(x) || x <= 0 || x > max_sigma_rel * (1 + 1e-12))
    stop_bad_argument(arg, x, paste(
      "a single number in (0, sqrt(1/12) = 0.2887], the relative width of a",
      "power-function EMA"), call)
  as.double(x)
}

# A single number strictly between 0 and 1.
as_open_fraction <- function(x, arg = deparse(substitute(x)),
                             call = sys.call(-1L)) {
  if (!is_single_number(x) || x <= 0 || x >= 1)
    stop_bad_argument(arg, x, "a single number in (0, 1)", call)
  as.double(x)
}

is_averaging_rule <- function(x) {
  inherits(x, c("kerasswa.averaging.EMA", "kerasswa.averaging.PowerEMA"))
}
