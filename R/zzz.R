# The Python module `kerasswa`. `.onLoad` binds a delay-load proxy, so that
# `library(kerasswa)` neither starts Python nor fails when the module is
# missing; code reaches the module through `swa_python()`.
kerasswa_python <- NULL

.onLoad <- function(libname, pkgname) {
  # "r-keras" is where keras3's install_keras() and install_kerasswa() put
  # Python packages; keras3 asks for the same environment with priority 10,
  # so when both packages are loaded keras3 decides.
  # When Python is already running, import() is not delayed and fails at once
  # if the module is missing; swa_python() reports that at the first use.
  try(
    kerasswa_python <<- reticulate::import(
      "kerasswa",
      delay_load = list(priority = 1, environment = "r-keras")
    ),
    silent = TRUE
  )
}

swa_python <- function() {
  # Checked here rather than left to the proxy, whose own error handler is
  # consumed by the first failed attempt and cannot say how to fix it. The
  # submodule, because any folder named `kerasswa` in the working directory
  # (this R package's own, under R CMD check) imports as an empty namespace
  # package when the real one is missing.
  if (!reticulate::py_module_available("kerasswa.swa"))
    stop(missing_python_package_message(), call. = FALSE)
  if (is.null(kerasswa_python))
    return(reticulate::import("kerasswa"))
  kerasswa_python
}

missing_python_package_message <- function() {
  python <- tryCatch(reticulate::py_config()$python,
                     error = function(e) "none found")
  paste0(
    "The Python package 'kerasswa' is not installed in the Python ",
    "environment that R uses (", python, ").\n",
    "Install it with `kerasswa::install_kerasswa()`, or with ",
    "`pip install kerasswa` (from a kerasswa checkout: `pip install .`) ",
    "run by that Python, then restart R."
  )
}
