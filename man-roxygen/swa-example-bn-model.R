#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' # A small network whose first layer is a batch normalization, compiled
#' # with SWA: 8 updates per epoch (64 samples, batches of 8), averaged from
#' # update 8, every 2 updates.
#' model <- keras_model_sequential(input_shape = 4) |>
#'   layer_batch_normalization() |>
#'   layer_dense(8, activation = "relu") |>
#'   layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05),
#'                             start_averaging = 8, average_period = 2),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
