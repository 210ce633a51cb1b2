# The three ways an R user's Python comes about, each tried from a fresh R
# process started in an empty folder (reticulate would take a .venv/ there
# before anything else): (a) RETICULATE_PYTHON names an environment with Keras
# but no kerasswa; (b) the r-keras virtualenv of keras3::install_keras();
# (c) nothing configured, so that reticulate builds an environment with uv from
# the py_require() declarations of keras3 and kerasswa.
#
# `make test` prepares (b) and the uv binary of (c), and names them in
# KERASSWA_SETUP_HOME; without it, as under R CMD check, these tests skip.

setup_home <- function() {
  home <- Sys.getenv("KERASSWA_SETUP_HOME")
  if (!nzchar(home))
    skip("KERASSWA_SETUP_HOME is not set (make test-r sets it)")
  home
}

# What an R user writes: a keras3 model with batch normalization trained with
# SWA for 16 updates, of which updates 4, 6, ..., 14 are snapshots, finished
# by callback_swa(), its statistics recomputed, saved and loaded back.
SETUP_SCRIPT <- '
library(keras3)
use_backend(Sys.getenv("SETUP_BACKEND"))
library(kerasswa)
set.seed(1)
x <- matrix(runif(256), ncol = 4)
y <- x %*% c(1, -2, 3, 0.5)
set_random_seed(1)
model <- keras_model_sequential(input_shape = 4) |>
  layer_batch_normalization() |>
  layer_dense(1)
model |> compile(
  optimizer = optimizer_swa(optimizer_sgd(0.05), start_averaging = 4,
                            average_period = 2),
  loss = "mse"
)
model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0,
             callbacks = list(callback_swa()))
swa_update_bn(model, x)
path <- tempfile(fileext = ".keras")
save_model(model, path)
restored <- load_model(path)
cat("snapshots:", swa_snapshot_count(model), "\\n")
cat("restored snapshots:", swa_snapshot_count(restored), "\\n")
cat("same predictions:", identical(predict(model, x, verbose = 0),
                                   predict(restored, x, verbose = 0)), "\\n")
cat("finite:", all(is.finite(unlist(get_weights(model)))), "\\n")
cat("backend:", config_backend(), "\\n")
cat("python:", reticulate::py_config()$python, "\\n")
cat("kerasswa module:", kerasswa:::swa_python()$`__file__`, "\\n")
'

# Runs SETUP_SCRIPT with Rscript in an empty folder, with the variables of
# `unset` removed from the environment and those of `set` (name = value)
# added, and returns its output lines with the exit status as "status".
run_setup <- function(set = character(), unset = character()) {
  folder <- tempfile("setup")
  dir.create(folder)
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  libraries <- paste(.libPaths(), collapse = .Platform$path.sep)
  set <- c(R_LIBS = libraries, set)
  args <- c(
    as.vector(rbind("-u", unset)),
    paste0(names(set), "=", set),
    file.path(R.home("bin"), "Rscript"), "--vanilla", "-e", shQuote(SETUP_SCRIPT)
  )
  old <- setwd(folder)
  on.exit(setwd(old), add = TRUE, after = FALSE)
  suppressWarnings(system2("env", args, stdout = TRUE, stderr = TRUE))
}

# The value printed after `label` by SETUP_SCRIPT.
setup_value <- function(output, label) {
  line <- grep(paste0("^", label, ":"), output, value = TRUE)
  if (length(line) != 1L)
    stop("no '", label, ":' line in the output:\n",
         paste(output, collapse = "\n"), call. = FALSE)
  trimws(sub(paste0("^", label, ":"), "", line))
}

expect_trained_with_swa <- function(output, backend) {
  status <- attr(output, "status")
  expect(is.null(status), paste0("Rscript failed (status ", status, "):\n",
                                 paste(output, collapse = "\n")))
  expect_identical(setup_value(output, "snapshots"), "6")
  expect_identical(setup_value(output, "restored snapshots"), "6")
  expect_identical(setup_value(output, "same predictions"), "TRUE")
  expect_identical(setup_value(output, "finite"), "TRUE")
  expect_identical(setup_value(output, "backend"), backend)
  # Always the R package's own copy of the Python module.
  expect_identical(
    dirname(setup_value(output, "kerasswa module")),
    normalizePath(system.file("python", "kerasswa", package = "kerasswa"))
  )
}

# Environment variables that would point reticulate somewhere else.
# And PYTHONDONTWRITEBYTECODE, which `make test` sets for its own sources: an
# environment that uv made has no compiled modules, and without it each start
# compiles Keras and TensorFlow anew (7 s).
PYTHON_SETTINGS <- c("RETICULATE_PYTHON", "RETICULATE_PYTHON_ENV",
                     "VIRTUAL_ENV", "PYTHONPATH", "KERAS_BACKEND",
                     "PYTHONDONTWRITEBYTECODE")

test_that("(a) RETICULATE_PYTHON names a Python with Keras but no kerasswa", {
  home <- setup_home()
  python <- Sys.getenv("KERASSWA_SETUP_PYTHON")
  # An environment with Keras (and TensorFlow and JAX), and no kerasswa.
  import_status <- function(module) {
    status <- system2("env", c("-u", "PYTHONPATH", python, "-c",
                               shQuote(paste("import", module))),
                      stdout = FALSE, stderr = FALSE)
    status
  }
  expect_identical(import_status("keras"), 0L)
  expect_false(identical(import_status("kerasswa"), 0L))
  for (backend in c("tensorflow", "jax")) {
    output <- run_setup(
      set = c(RETICULATE_PYTHON = python, SETUP_BACKEND = backend),
      unset = PYTHON_SETTINGS
    )
    expect_trained_with_swa(output, backend)
    expect_identical(setup_value(output, "python"), python)
  }
})

test_that("(b) the r-keras virtualenv made by keras3::install_keras()", {
  home <- setup_home()
  workon_home <- file.path(home, "virtualenvs")
  expect_true(file.exists(file.path(workon_home, "r-keras", "bin", "python")))
  output <- run_setup(
    set = c(WORKON_HOME = workon_home, SETUP_BACKEND = "tensorflow"),
    unset = PYTHON_SETTINGS
  )
  expect_trained_with_swa(output, "tensorflow")
  expect_match(setup_value(output, "python"),
               file.path(workon_home, "r-keras"), fixed = TRUE)
})

test_that("(c) nothing configured: reticulate's py_require() environment", {
  home <- setup_home()
  uv <- Sys.getenv("KERASSWA_SETUP_UV")
  expect_true(file.exists(uv))
  # uv on the PATH, as `pip install uv` leaves it; no Python configured, an
  # empty WORKON_HOME (no r-keras, no r-reticulate), caches under `home`.
  bin <- tempfile("bin")
  dir.create(bin)
  on.exit(unlink(bin, recursive = TRUE), add = TRUE)
  file.symlink(uv, file.path(bin, "uv"))
  empty <- tempfile("workon")
  dir.create(empty)
  on.exit(unlink(empty, recursive = TRUE), add = TRUE)
  settings <- c(
    PATH = paste(bin, Sys.getenv("PATH"), sep = .Platform$path.sep),
    UV_PYTHON_PREFERENCE = "only-system",
    WORKON_HOME = empty,
    R_USER_CACHE_DIR = file.path(home, "cache"),
    UV_CACHE_DIR = file.path(home, "cache", "uv"),
    SETUP_BACKEND = "tensorflow"
  )
  # Twice: the second start finds the environment that the first one built.
  first <- run_setup(set = settings, unset = PYTHON_SETTINGS)
  expect_trained_with_swa(first, "tensorflow")
  second <- run_setup(set = settings, unset = PYTHON_SETTINGS)
  expect_trained_with_swa(second, "tensorflow")
  expect_identical(setup_value(second, "python"), setup_value(first, "python"))
  expect_match(setup_value(first, "python"), file.path(home, "cache"),
               fixed = TRUE)
})
