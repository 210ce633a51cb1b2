test_that("library(kerasswa) neither starts Python nor fails", {
  output <- run_r(paste(
    "library(kerasswa)",
    "cat('python started:', reticulate::py_available(), '\\n')",
    sep = "; "
  ))
  expect_identical(attr(output, "status"), NULL)
  expect_match(output, "python started: FALSE", all = FALSE, fixed = TRUE)
})

test_that("the Python module is this package's own copy, of its version", {
  skip_if_no_kerasswa()
  module <- swa_python()
  expect_identical(
    normalizePath(dirname(module$`__file__`)),
    normalizePath(system.file("python", "kerasswa", package = "kerasswa"))
  )
  expect_identical(module$`__version__`,
                   as.character(utils::packageVersion("kerasswa")))
})

# A folder holding a module named `name` whose __init__.py is `code`.
python_module_folder <- function(name, code) {
  folder <- tempfile("pymodule")
  dir.create(file.path(folder, name), recursive = TRUE)
  writeLines(code, file.path(folder, name, "__init__.py"))
  folder
}

test_that("a Python without Keras gives an error that says how to fix it", {
  skip_if_no_kerasswa()
  # The same Python, where a module placed first on the path hides Keras.
  shadow <- python_module_folder(
    "keras", "raise ModuleNotFoundError(\"No module named 'keras'\")"
  )
  on.exit(unlink(shadow, recursive = TRUE), add = TRUE)

  output <- run_r(
    paste(
      "library(kerasswa)",
      "message(tryCatch(optimizer_swa('sgd'), error = conditionMessage))",
      sep = "; "
    ),
    env = c(
      paste0("RETICULATE_PYTHON=", shQuote(reticulate::py_config()$python)),
      paste0("PYTHONPATH=", shQuote(shadow))
    )
  )
  output <- paste(output, collapse = "\n")
  expect_match(output, "kerasswa needs a Python environment with Keras 3",
               fixed = TRUE)
  expect_match(output, reticulate::py_config()$python, fixed = TRUE)
  expect_match(output, "keras3::install_keras()", fixed = TRUE)
})

test_that("a kerasswa module imported before is used, and named", {
  skip_if_no_kerasswa()
  other <- python_module_folder(
    "kerasswa", c("__version__ = '9.9.9'", "SWA = None")
  )
  on.exit(unlink(other, recursive = TRUE), add = TRUE)

  output <- run_r(
    paste(
      "library(kerasswa)",
      sprintf("reticulate::import_from_path('kerasswa', path = '%s')", other),
      "cat('version used:', kerasswa:::swa_python()$`__version__`, '\\n')",
      sep = "; "
    ),
    env = paste0("RETICULATE_PYTHON=", shQuote(reticulate::py_config()$python))
  )
  output <- paste(output, collapse = "\n")
  expect_match(output, "version used: 9.9.9", fixed = TRUE)
  expect_match(
    output,
    sprintf("using the Python module kerasswa 9.9.9 already imported from %s",
            normalizePath(file.path(other, "kerasswa"))),
    fixed = TRUE
  )
  expect_match(output, sprintf("not the copy in this R package (version %s)",
                               utils::packageVersion("kerasswa")),
               fixed = TRUE)
})

test_that("a model saved with SWA loads in a new session after library(kerasswa)", {
  skip_if_no_kerasswa()
  model <- keras3::keras_model_sequential(input_shape = 4) |>
    keras3::layer_dense(1)
  keras3::compile(model, optimizer = optimizer_swa(keras3::optimizer_sgd(0.05)),
                  loss = "mse")
  x <- matrix(runif(32), ncol = 4)
  keras3::fit(model, x, x[, 1], epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".keras")
  on.exit(unlink(path), add = TRUE)
  keras3::save_model(model, path)

  # Nothing but loading: no kerasswa function is called before load_model().
  output <- run_r(
    paste(
      "library(keras3)",
      "library(kerasswa)",
      sprintf("restored <- load_model('%s')", path),
      "cat('optimizer:', class(restored$optimizer)[[1]], '\\n')",
      "cat('snapshots:', swa_snapshot_count(restored), '\\n')",
      sep = "; "
    ),
    env = paste0("RETICULATE_PYTHON=", shQuote(reticulate::py_config()$python))
  )
  expect_identical(attr(output, "status"), NULL)
  expect_match(output, "optimizer: kerasswa.swa.SWA", all = FALSE, fixed = TRUE)
  expect_match(output, "snapshots: 1", all = FALSE, fixed = TRUE)
})

test_that("the R packages are the versions the run asks for", {
  # `make test-r-oldest` names the oldest versions that the DESCRIPTION
  # accepts: the run must not fall back on newer ones from another library.
  expected <- strsplit(Sys.getenv("KERASSWA_EXPECT_VERSIONS"), " +")[[1L]]
  skip_if(length(expected) == 0L, "KERASSWA_EXPECT_VERSIONS is not set")
  expected <- matrix(expected, nrow = 2L)
  for (i in seq_len(ncol(expected)))
    expect_identical(as.character(utils::packageVersion(expected[1L, i])),
                     expected[2L, i], label = expected[1L, i])
})
