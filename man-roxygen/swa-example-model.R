#' @examplesIf reticulate::py_module_available("kerasswa.swa")
#' # A linear model trained with SWA on data made here: 16 updates
#' # (64 samples, batches of 8, 2 epochs), averaged from update 5 every 2.
#' keras <- reticulate::import("keras")
#' model <- keras$Sequential(list(
#'   keras$Input(shape = list(4L)),
#'   keras$layers$Dense(1L)
#' ))
#' model$compile(
#'   optimizer = optimizer_swa(keras$optimizers$SGD(learning_rate = 0.05),
#'                             start_averaging = 5, average_period = 2),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
#' history <- model$fit(x, y, batch_size = 8L, epochs = 2L, verbose = 0L)
