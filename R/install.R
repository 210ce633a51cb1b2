#' Install the kerasswa Python package
#'
#' Installs the Python package `kerasswa`, which does the work behind
#' [optimizer_swa()], into a Python environment with
#' [reticulate::py_install()]. It must go into the environment where Keras 3
#' is installed; the default is the one keras3's `install_keras()` creates.
#'
#' @param envname The name of, or path to, the Python environment to install
#'   into. `NULL` means the environment reticulate uses now.
#' @param method The installation method: `"auto"`, `"virtualenv"` or
#'   `"conda"` (see [reticulate::py_install()]).
#' @param ... Further arguments for [reticulate::py_install()], such as
#'   `pip_options`.
#' @param package What to install, as `pip install` understands it (a name
#'   with a version, a path, a URL). By default, the source tree when R runs
#'   from a kerasswa checkout (the working directory, or the package loaded
#'   from source, holds the `pyproject.toml` of `kerasswa`), otherwise
#'   `"kerasswa"` from PyPI.
#'
#' @returns `package`, invisibly. Restart R afterwards, so that reticulate
#'   sees the new package.
#'
#' @family SWA functions
#' @export
#'
#' @examples
#' # Whether the Python package is there already:
#' reticulate::py_module_available("kerasswa.swa")
#'
#' # Installing changes a Python environment, so it is not run here:
#' if (FALSE) {
#'   install_kerasswa()
#'   install_kerasswa(envname = "my-env", package = "kerasswa==0.1.0")
#' }
install_kerasswa <- function(envname = "r-keras",
                             method = c("auto", "virtualenv", "conda"),
                             ...,
                             package = NULL) {
  method <- match_choice(method)
  if (!is.null(envname))
    check_string(envname)
  if (is.null(package))
    package <- kerasswa_source_tree()
  if (is.null(package))
    package <- "kerasswa"
  check_string(package)
  reticulate::py_install(package, envname = envname, method = method,
                         pip = TRUE, ...)
  invisible(package)
}

# The root of a kerasswa checkout that R runs from, or NULL. The package
# loaded from source (pkgload) has its root, or the root's parent, there.
kerasswa_source_tree <- function() {
  package_root <- system.file(package = "kerasswa")
  candidates <- c(getwd(),
                  if (nzchar(package_root))
                    c(package_root, dirname(package_root)))
  for (root in unique(normalizePath(candidates, mustWork = FALSE))) {
    pyproject <- file.path(root, "pyproject.toml")
    if (file.exists(pyproject) &&
        any(grepl("^name\\s*=\\s*[\"']kerasswa[\"']",
                  readLines(pyproject, warn = FALSE))))
      return(root)
  }
  NULL
}
