# Installs given versions of R packages from the Archive of CRAN or of a
# CRAN-like repository (src/contrib/Archive/<name>/<name>_<version>.tar.gz),
# in the order given, into a library; a package already there at that version
# is left alone. Their other dependencies must be on .libPaths() already.
#
#   Rscript tools/install-r-archived.R LIBRARY REPOSITORY name version [name version ...]
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4L || length(args) %% 2L != 0L)
  stop("usage: install-r-archived.R LIBRARY REPOSITORY name version ...")
library <- args[[1L]]
repository <- sub("/+$", "", args[[2L]])
pairs <- matrix(args[-(1:2)], nrow = 2L)

dir.create(library, showWarnings = FALSE, recursive = TRUE)
.libPaths(c(library, .libPaths()))
options(warn = 1)
for (i in seq_len(ncol(pairs))) {
  name <- pairs[1L, i]
  version <- pairs[2L, i]
  installed <- suppressWarnings(tryCatch(
    as.character(utils::packageVersion(name, lib.loc = library)),
    error = function(e) NA_character_
  ))
  if (identical(installed, version))
    next
  tarball <- sprintf("%s_%s.tar.gz", name, version)
  url <- sprintf("%s/src/contrib/Archive/%s/%s", repository, name, tarball)
  destination <- file.path(tempdir(), tarball)
  message("Installing ", name, " ", version, " from ", url, " ...")
  utils::download.file(url, destination, quiet = TRUE, mode = "wb")
  utils::install.packages(destination, lib = library, repos = NULL,
                          type = "source", quiet = TRUE)
  if (!identical(as.character(utils::packageVersion(name, lib.loc = library)), version))
    stop("could not install ", name, " ", version, " into ", library, call. = FALSE)
}
