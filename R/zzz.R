# The Python half of kerasswa ships inside this R package (inst/python/kerasswa,
# a copy of the Python sources), and is imported from there on first use: all
# the Python environment needs is Keras 3 and a backend. Nothing here starts
# Python; `swa_python()` does, when a function needs the module.

# The module, once imported in this session.
the <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  # reticulate (>= 1.41) builds a Python environment from what the loaded
  # packages declare, when the user configured none. keras3 (an import, so
  # loaded first) declares Keras and its backend; the floor is ours. Once
  # Python runs, requirements can no longer change, so none is declared then.
  if (!reticulate::py_available(initialize = FALSE))
    reticulate::py_require(kerasswa_python_requirements)
  # Importing kerasswa registers its classes with Keras, which load_model()
  # needs to rebuild a model saved with optimizer_swa(): done as soon as Keras
  # is, so that `library(kerasswa); load_model(path)` works in a new session.
  reticulate::py_register_load_hook("keras", import_kerasswa)
}

# The dependencies of pyproject.toml, whose floors `make test-python-oldest`
# tests (tests/python/test_packaging.py checks that the two lists agree).
kerasswa_python_requirements <- c("keras>=3.8", "numpy>=1.23")

swa_python <- function() {
  if (is.null(the$module)) {
    # Keras first, through keras3's handle on it, so that keras3's set-up
    # (the backend, ...) runs as for any keras3 call. Loading Keras runs the
    # hook of .onLoad, which imports kerasswa.
    keras_version <- tryCatch(keras3::keras$`__version__`,
                              error = function(e) NULL)
    if (is.null(keras_version))
      stop(missing_keras_message(), call. = FALSE)
    import_kerasswa()
  }
  the$module
}

# Imports this package's copy of the Python module, once per session: the hook
# that .onLoad registers, called while Python imports Keras.
import_kerasswa <- function() {
  if (!is.null(the$module))
    return(invisible(the$module))
  path <- system.file("python", package = "kerasswa", mustWork = TRUE)
  module <- reticulate::import_from_path("kerasswa", path = path)
  # A `kerasswa` imported before (from a pip install, or a checkout on
  # sys.path) stays in Python's module cache and is the one used: say so.
  origin <- normalizePath(dirname(module$`__file__`), mustWork = FALSE)
  ours <- normalizePath(file.path(path, "kerasswa"), mustWork = FALSE)
  if (!identical(origin, ours))
    message(sprintf(paste0(
      "kerasswa: using the Python module kerasswa %s already imported from ",
      "%s, not the copy in this R package (version %s)."),
      module$`__version__`, origin, utils::packageVersion("kerasswa")))
  the$module <- module
  invisible(module)
}

missing_keras_message <- function() {
  python <- tryCatch(reticulate::py_config()$python,
                     error = function(e) "none found")
  paste0(
    "kerasswa needs a Python environment with Keras 3 and a backend, and ",
    "the one R uses (", python, ") has no Keras.\n",
    "Create one with `keras3::install_keras()` and restart R, or point ",
    "RETICULATE_PYTHON at a Python that has Keras 3 (kerasswa itself needs ",
    "no installing: it ships with this R package)."
  )
}
