test_that("library(kerasswa) neither starts Python nor fails", {
  output <- run_r(paste(
    "library(kerasswa)",
    "cat('python started:', reticulate::py_available(), '\\n')",
    sep = "; "
  ))
  expect_identical(attr(output, "status"), NULL)
  expect_match(output, "python started: FALSE", all = FALSE, fixed = TRUE)
})

test_that("a missing Python package gives an error that says how to fix it", {
  skip_if_no_kerasswa()
  # The same Python, where a module placed first on the path hides kerasswa.
  shadow <- tempfile("shadow")
  dir.create(file.path(shadow, "kerasswa"), recursive = TRUE)
  on.exit(unlink(shadow, recursive = TRUE), add = TRUE)
  writeLines("raise ModuleNotFoundError(\"No module named 'kerasswa'\")",
             file.path(shadow, "kerasswa", "__init__.py"))

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
  expect_match(output, "The Python package 'kerasswa' is not installed",
               fixed = TRUE)
  expect_match(output, "kerasswa::install_kerasswa()", fixed = TRUE)
  expect_match(output, "pip install kerasswa", fixed = TRUE)
})

test_that("install_kerasswa() installs from a checkout when run in one", {
  checkout <- tempfile("checkout")
  other <- tempfile("other")
  dir.create(checkout)
  dir.create(other)
  on.exit(unlink(c(checkout, other), recursive = TRUE), add = TRUE)
  writeLines(c("[project]", 'name = "kerasswa"', 'version = "0.1.0"'),
             file.path(checkout, "pyproject.toml"))
  writeLines(c("[project]", 'name = "something-else"'),
             file.path(other, "pyproject.toml"))

  old <- setwd(checkout)
  on.exit(setwd(old), add = TRUE, after = FALSE)
  expect_identical(kerasswa_source_tree(), normalizePath(checkout))
  setwd(other)
  expect_null(kerasswa_source_tree())
})

test_that("install_kerasswa() checks its arguments before installing", {
  expect_error(install_kerasswa(method = "pip"), class = "kerasswa_bad_argument",
               "^`method` must be one of \"auto\", \"virtualenv\", \"conda\"")
  expect_error(install_kerasswa(envname = 1), "^`envname` must be")
  expect_error(install_kerasswa(package = c("a", "b")), "^`package` must be")
})
