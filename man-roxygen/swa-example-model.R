#' @examplesIf interactive() || identical(Sys.getenv("NOT_CRAN"), "true") || nzchar(Sys.getenv("IN_PKGDOWN"))
#' library(keras3)
#' # A linear model trained with SWA on data made here: 16 updates
#' # (64 samples, batches of 8, 2 epochs), averaged from update 5 every 2.
#' model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
#' model |> compile(
#'   optimizer = optimizer_swa(optimizer_sgd(0.05),
#'                             start_averaging = 5, average_period = 2),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' history <- model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
