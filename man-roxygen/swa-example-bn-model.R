#' @examplesIf reticulate::py_module_available("kerasswa.swa")
#' # A small network whose first layer is a batch normalization, compiled
#' # with SWA: 8 updates per epoch (64 samples, batches of 8), averaged from
#' # update 8, every 2 updates.
#' keras <- reticulate::import("keras")
#' model <- keras$Sequential(list(
#'   keras$Input(shape = list(4L)),
#'   keras$layers$BatchNormalization(),
#'   keras$layers$Dense(8L, activation = "relu"),
#'   keras$layers$Dense(1L)
#' ))
#' model$compile(
#'   optimizer = optimizer_swa(keras$optimizers$SGD(learning_rate = 0.05),
#'                             start_averaging = 8, average_period = 2),
#'   loss = "mse"
#' )
#' x <- matrix(runif(256), ncol = 4)
#' y <- matrix(rowSums(x))
