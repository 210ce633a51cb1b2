# Keras reads its backend once, when it is first imported.
if (!nzchar(Sys.getenv("KERAS_BACKEND")))
  Sys.setenv(KERAS_BACKEND = "tensorflow")

# kerasswa's Python half ships with the package; what a test needs besides is
# a Python with Keras 3. Under R CMD check on CRAN or r-universe (NOT_CRAN not
# "true"), a test that needs Python skips before anything can start it: asking
# reticulate whether Keras is there imports it, and with no Python configured
# reticulate (>= 1.41) would then download uv, a Python and TensorFlow into
# the home folder. The R-only tests still run there. `make test` sets
# KERASSWA_REQUIRE_PYTHON=true: there a test that needs Python always runs,
# and a missing Keras is a failure, not a reason to skip.
skip_if_no_kerasswa <- function() {
  required <- isTRUE(as.logical(Sys.getenv("KERASSWA_REQUIRE_PYTHON")))
  if (!required)
    skip_on_cran()
  if (reticulate::py_module_available("keras"))
    return(invisible(TRUE))
  if (required)
    stop("The Python that reticulate uses has no Keras, and ",
         "KERASSWA_REQUIRE_PYTHON is set.", call. = FALSE)
  skip("no Python with Keras 3 is available")
}

library(keras3)

# The Python module keras (keras3's handle on it), for the few things keras3
# has no function for.
keras_module <- function() keras3::keras

# A float32 Keras variable holding `values`, for tests that apply gradients
# by hand. keras3's keras_variable() came after keras3 1.3; the Python
# constructor serves every keras3 this package accepts (1.3 and later).
new_variable <- function(values) keras_module()$Variable(values, dtype = "float32")

# A tensor or variable as a plain R vector (NumPy scalars and 1-d arrays
# would keep a dim attribute).
as_r_vector <- function(x) as.vector(op_convert_to_numpy(x))

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
# `optimizer` and the mean squared error unless `optimizer` is NULL. The seed
# fixes its initial weights.
linear_model <- function(optimizer = NULL) {
  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
  if (!is.null(optimizer)) model |> compile(optimizer = optimizer, loss = "mse")
  model
}

# The linear model compiled with SWA around SGD.
linear_swa_model <- function(..., learning_rate = 0.05) {
  linear_model(optimizer_swa(optimizer_sgd(learning_rate), ...))
}

linear_data <- function(n = 64L) {
  set.seed(1)
  x <- matrix(runif(4L * n), ncol = 4L)
  list(x = x, y = matrix(x %*% c(1, -2, 3, 0.5) + 0.25))
}

# A model whose first layer is a batch normalization: the layer sees the data
# itself, so its statistics can be worked out in R.
batch_norm_model <- function(optimizer = NULL, momentum = 0.99) {
  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 4) |>
    layer_batch_normalization(momentum = momentum) |>
    layer_dense(1)
  if (!is.null(optimizer)) model |> compile(optimizer = optimizer, loss = "mse")
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
