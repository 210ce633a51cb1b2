# Keras reads its backend once, when it is first imported.
if (!nzchar(Sys.getenv("KERAS_BACKEND")))
  Sys.setenv(KERAS_BACKEND = "tensorflow")

# `make test` sets KERASSWA_REQUIRE_PYTHON=true: there a missing Python
# package is a failure, not a reason to skip.
skip_if_no_kerasswa <- function() {
  # The submodule, as in swa_python(): a folder named kerasswa in the working
  # directory would pass for the package.
  if (reticulate::py_module_available("kerasswa.swa"))
    return(invisible(TRUE))
  if (isTRUE(as.logical(Sys.getenv("KERASSWA_REQUIRE_PYTHON"))))
    stop("The Python package kerasswa is not available to reticulate, ",
         "and KERASSWA_REQUIRE_PYTHON is set.", call. = FALSE)
  skip("the Python package kerasswa is not available")
}

keras_module <- function() reticulate::import("keras")

# A tensor or variable as a plain R vector (NumPy scalars and 1-d arrays
# would keep a dim attribute).
as_r_vector <- function(x) {
  as.vector(keras_module()$ops$convert_to_numpy(x))
}

# Runs `code` in a fresh R process that sees the same libraries, and returns
# its output lines (with the exit status as attribute "status").
run_r <- function(code, env = character()) {
  libraries <- paste(.libPaths(), collapse = .Platform$path.sep)
  suppressWarnings(system2(
    file.path(R.home("bin"), "Rscript"),
    c("--vanilla", "-e", shQuote(code)),
    stdout = TRUE, stderr = TRUE,
    env = c(paste0("R_LIBS=", shQuote(libraries)), env)
  ))
}

# A linear model y = x %*% kernel + bias on 4 inputs, compiled with
# `optimizer` and the mean squared error unless `optimizer` is NULL.
linear_model <- function(optimizer = NULL) {
  keras <- keras_module()
  keras$utils$set_random_seed(1L)
  model <- keras$Sequential(list(
    keras$Input(shape = list(4L)),
    keras$layers$Dense(1L)
  ))
  if (!is.null(optimizer)) model$compile(optimizer = optimizer, loss = "mse")
  model
}

# The linear model compiled with SWA around SGD.
linear_swa_model <- function(..., learning_rate = 0.05) {
  keras <- keras_module()
  linear_model(optimizer_swa(
    keras$optimizers$SGD(learning_rate = learning_rate), ...
  ))
}

linear_data <- function(n = 64L) {
  set.seed(1)
  x <- matrix(runif(4L * n), ncol = 4L)
  list(x = x, y = matrix(x %*% c(1, -2, 3, 0.5) + 0.25))
}

# A model whose first layer is a batch normalization: the layer sees the data
# itself, so its statistics can be worked out in R.
batch_norm_model <- function(optimizer = NULL, momentum = 0.99) {
  keras <- keras_module()
  keras$utils$set_random_seed(1L)
  model <- keras$Sequential(list(
    keras$Input(shape = list(4L)),
    keras$layers$BatchNormalization(momentum = momentum),
    keras$layers$Dense(1L)
  ))
  if (!is.null(optimizer))
    model$compile(optimizer = optimizer, loss = "mse")
  model
}

# The moving mean and variance of the batch normalization of a
# batch_norm_model().
batch_norm_statistics <- function(model) {
  layer <- model$layers[[1]]
  list(mean = as_r_vector(layer$moving_mean),
       variance = as_r_vector(layer$moving_variance))
}

# What a pass of update_bn() over `x` in batches of `batch_size` rows gives:
# the mean and the biased variance of each batch, averaged with the batch
# sizes as weights (so the mean is that of all of `x`).
pass_statistics <- function(x, batch_size) {
  batches <- split(seq_len(nrow(x)), (seq_len(nrow(x)) - 1L) %/% batch_size)
  sizes <- lengths(batches)
  moments <- vapply(batches, function(rows) {
    batch <- x[rows, , drop = FALSE]
    means <- colMeans(batch)
    c(means, colMeans(sweep(batch, 2L, means)^2))
  }, numeric(2L * ncol(x)))
  weighted <- as.vector(moments %*% sizes) / sum(sizes)
  list(mean = weighted[seq_len(ncol(x))],
       variance = weighted[ncol(x) + seq_len(ncol(x))])
}
