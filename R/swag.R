#' SWA-Gaussian optimizer: a Gaussian over the weights, fitted while training
#'
#' Wraps a Keras 3 optimizer as [optimizer_swa()] does, and beside the mean
#' of the snapshots of the weights keeps what SWAG (Maddox et al., 2019, "A
#' Simple Baseline for Bayesian Uncertainty in Deep Learning") needs to fit
#' a Gaussian to them: the mean of their squares, and the deviations from
#' the mean of the last `max_rank` snapshots. Weights drawn from that
#' Gaussian ([with_swag_sample()]) make models whose averaged predictions
#' ([swag_predict()]) are better calibrated than those of one model.
#'
#' @inheritParams optimizer_swa
#' @param max_rank The number of deviations kept, the rank of the low-rank
#'   part of the covariance: a whole number >= 0. The paper's 20 is the
#'   default; `0` keeps none (SWAG-diagonal). The optimizer keeps
#'   `2 + max_rank` copies of the trainable weights.
#' @param ... Other arguments of [optimizer_swa()], by name:
#'   `sequential_update`, `clipnorm`, `clipvalue`, `global_clipnorm`,
#'   `decay`, `lr` and `learning_rate`, with the same meaning and checks.
#'   `averaging` is not one of them: the Gaussian is fitted to the plain mean
#'   of the snapshots.
#' @param var_clamp The floor of the diagonal variance `s - m^2` (which
#'   rounding can make slightly negative): a number >= 0. `1e-30`, the
#'   reference implementation's, is the default.
#' @param name The name of the optimizer, and the prefix of the names of
#'   its variables: a string, or `NULL` (the default) for a name of its own
#'   (`"swag"`, then `"swag_1"`, ...).
#'
#' @details
#' The snapshots are those of [optimizer_swa()], with the same
#' `start_averaging` and `average_period` (and `start_averaging = NULL` for
#' snapshots taken with [swa_take_snapshot()] or by [callback_swa()]), and
#' everything that works on an SWA model works on a SWAG model:
#' [swa_assign_averages()], [with_swa_weights()], [swa_snapshot_count()],
#' saving and loading.
#'
#' For each trainable weight, with `m` the mean of its snapshots, `s` the
#' mean of their squares and `D` the `K` deviations held (`K` is
#' `min(snapshots, max_rank)`, the optimizer's `rank`), a sample is
#' `m + sqrt(scale) * (sqrt(max(s - m^2, var_clamp)) * z1 + t(D) %*% z2 / sqrt(K - 1))`,
#' with `z1` and `z2` standard normal and one `z2` shared by all weights, as
#' in the reference implementation. The low-rank term needs `K >= 2`.
#'
#' @returns The Python `kerasswa.SWAG` optimizer object, to pass as
#'   `optimizer` to keras3's `compile()`.
#'
#' @family SWAG functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swag(optimizer_sgd(0.05), start_averaging = 8,
#'                              average_period = 2, max_rank = 5),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- x %*% c(1, -2, 3, 0.5)
#' model |> fit(x, y, batch_size = 8, epochs = 3, verbose = 0)
#'
#' # 24 updates, snapshots at updates 8, 10, ..., 22: 8 snapshots, of
#' # which the last 5 deviations are kept.
#' swa_snapshot_count(model)
#' model$optimizer$rank
#'
#' # The mean prediction of 10 models drawn from the Gaussian.
#' swag_predict(model, x[1:3, ], num_samples = 10, seed = 1)
optimizer_swag <- function(optimizer,
                           start_averaging = 0,
                           average_period = 10,
                           max_rank = 20,
                           ...,
                           var_clamp = 1e-30,
                           name = NULL) {
  dots <- list(...)
  if ("averaging" %in% names(dots))
    stop_kerasswa(
      sprintf(paste0("optimizer_swag() fits its Gaussian to the plain mean ",
                     "of the snapshots: it takes no `averaging` (use ",
                     "optimizer_swa() for a moving average).\n",
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
  args$max_rank <- as_count(max_rank, minimum = 0L)
  args$var_clamp <- as_rate(var_clamp, allow_zero = TRUE)
  do.call(swa_python()$SWAG, args)
}

#' Evaluate an expression with weights drawn from the SWAG Gaussian
#'
#' Puts one sample of the Gaussian that an [optimizer_swag()] optimizer has
#' fitted into the model's trainable weights, evaluates `expr`, and then
#' puts the training weights back exactly as they were, even if `expr`
#' fails. Non-trainable variables (batch-normalization statistics) are not
#' sampled, and are put back too if `expr` changes them (with
#' [swa_update_bn()], say).
#'
#' @param model A Keras model compiled with `optimizer = optimizer_swag(...)`
#'   that has taken at least one snapshot (two or more with
#'   `covariance = TRUE`).
#' @param expr An R expression to evaluate with the sampled weights.
#' @param seed `NULL` for a new sample each time, a whole number >= 0 (the
#'   same number gives the same sample, on one backend), or a Keras seed
#'   generator from keras3's `random_seed_generator()`, drawn from in turn.
#' @param scale The scale of the covariance, a number >= 0: `0.5` (the
#'   paper's choice) is the default; `0` gives the SWA mean.
#' @param covariance `TRUE` to draw from the full SWAG Gaussian (diagonal
#'   plus low-rank part, which needs two deviations or more); `FALSE` to
#'   draw from its diagonal part only (SWAG-diagonal).
#'
#' @details
#' The sample is described in [optimizer_swag()]. [swag_predict()] averages
#' predictions over many samples; `with_swag_sample()` is for anything else
#' one sample is wanted for.
#'
#' @returns The value of `expr`.
#'
#' @family SWAG functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swag(optimizer_sgd(0.05), average_period = 2),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- x %*% c(1, -2, 3, 0.5)
#' model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
#'
#' # The loss of one model drawn from the Gaussian; the same seed draws the
#' # same model.
#' with_swag_sample(model, evaluate(model, x, y, verbose = 0), seed = 1)
#'
#' # The model keeps its training weights.
#' evaluate(model, x, y, verbose = 0)
with_swag_sample <- function(model, expr, seed = NULL, scale = 0.5,
                             covariance = TRUE) {
  optimizer <- model_swag_optimizer(model)
  seed <- as_seed(seed)
  scale <- as_rate(scale, allow_zero = TRUE)
  covariance <- check_flag(covariance)
  check_can_sample(optimizer, covariance, "with_swag_sample()")
  sampled <- optimizer$use_sample_vars(model$variables, scale = scale,
                                       seed = seed, covariance = covariance)
  # Python's context manager restores every variable of the model when it is
  # left, normally or (after on.exit() here) when `expr` fails.
  sampled$`__enter__`()
  on.exit(sampled$`__exit__`(NULL, NULL, NULL), add = TRUE)
  expr
}

#' Bayesian model averaging with SWAG
#'
#' Predicts with `num_samples` models whose weights are drawn from the
#' Gaussian that an [optimizer_swag()] optimizer has fitted, and returns the
#' mean of their predictions (for a classifier that ends in a softmax, the
#' averaged probabilities, usually better calibrated than one model's).
#' Afterwards the model's weights and statistics are exactly as before, even
#' if an error interrupts it.
#'
#' @inheritParams with_swag_sample
#' @param x The inputs to predict for: an R array or matrix of finite
#'   numbers (a list of them for a model with several inputs), or a Python
#'   object that `predict()` takes, such as a `tf.data.Dataset`.
#' @param num_samples The number of models drawn, a whole number >= 1.
#' @param bn_data `NULL`, or the inputs (usually the training inputs) over
#'   which the batch-normalization statistics are recomputed for each model
#'   drawn, as [swa_update_bn()] does and as the paper does; the same kinds
#'   of data as `x`.
#' @param batch_size `NULL` for Keras's default, or the batch size of
#'   `predict()`, a whole number >= 1.
#' @param seed `NULL` for new samples each call, a whole number >= 0 (the
#'   same number gives the same result, on one backend), or a Keras seed
#'   generator from keras3's `random_seed_generator()`.
#' @param verbose `0` (silent) or `1` (a progress bar over the samples).
#' @param bn_batch_size The batch size of the batch-normalization pass over
#'   array `bn_data`, a whole number >= 1.
#'
#' @returns The mean of the predictions: an R array with the shape of
#'   `predict(model, x)` (a list of them for a model with several outputs).
#'
#' @family SWAG functions
#' @export
#'
#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' model <- keras_model_sequential(input_shape = 2) |>
#'   layer_dense(3, activation = "softmax")
#' model |> compile(
#'   optimizer = optimizer_swag(optimizer_sgd(0.1), average_period = 2,
#'                              max_rank = 4),
#'   loss = "sparse_categorical_crossentropy"
#' )
#' x <- matrix(runif(64), ncol = 2)
#' y <- (x[, 1] > 0.5) + (x[, 2] > 0.5)
#' model |> fit(x, y, batch_size = 4, epochs = 2, verbose = 0)
#'
#' # Class probabilities averaged over 8 models drawn from the Gaussian.
#' probabilities <- swag_predict(model, x[1:5, ], num_samples = 8, seed = 1)
#' probabilities
#' rowSums(probabilities)
swag_predict <- function(model, x, num_samples = 30, scale = 0.5,
                         covariance = TRUE, bn_data = NULL, batch_size = NULL,
                         seed = NULL, verbose = 0, bn_batch_size = 32) {
  optimizer <- model_swag_optimizer(model)
  args <- list(
    model,
    as_model_data(x),
    num_samples = as_count(num_samples, minimum = 1L),
    scale = as_rate(scale, allow_zero = TRUE),
    covariance = check_flag(covariance),
    bn_data = if (!is.null(bn_data)) as_model_data(bn_data),
    batch_size = as_optional_count(batch_size, minimum = 1L),
    seed = as_seed(seed),
    verbose = as_verbose(verbose),
    bn_batch_size = as_count(bn_batch_size, minimum = 1L)
  )
  check_can_sample(optimizer, args$covariance, "swag_predict()")
  do.call(swa_python()$swag_predict, args)
}

# The SWAG optimizer that trains `model`.
model_swag_optimizer <- function(model, arg = deparse(substitute(model)),
                                 call = sys.call(-1L)) {
  expected <- "a Keras model compiled with optimizer_swag()"
  optimizer <- model_swa_optimizer(model, expected = expected, arg = arg,
                                   call = call)
  if (!inherits(optimizer, "kerasswa.swag.SWAG"))
    stop_bad_argument(arg, model, expected, call,
                      received = describe_training(model))
  optimizer
}

# Python refuses to sample too, but in terms of its own methods; say it in
# terms of the R function and its arguments, before anything is changed.
check_can_sample <- function(optimizer, covariance, caller,
                             call = sys.call(-1L)) {
  count <- as.integer(optimizer$snapshot_count)
  if (count == 0L)
    stop_kerasswa(
      sprintf(paste0("%s: the SWAG optimizer has taken no snapshot yet, so ",
                     "there is no Gaussian to sample from. Train past ",
                     "`start_averaging` (or call swa_take_snapshot()) first."),
              caller),
      call = call
    )
  rank <- as.integer(optimizer$rank)
  if (covariance && rank < 2L)
    stop_bad_argument("covariance", covariance, sprintf(paste(
      "FALSE while the optimizer holds fewer than 2 deviations (it holds %d,",
      "with max_rank = %d): the low-rank part of the covariance needs more",
      "snapshots"), rank, as.integer(optimizer$max_rank)),
      call)
}
