# Installs the R packages that Debian does not have (or has too old), from CRAN
# or a CRAN-like repository, into a library; does nothing when they are there.
#
#   Rscript tools/install-r-packages.R LIBRARY REPOSITORY 'name (>= version)' ...
#
# Their own dependencies come from the same repository when no library on
# .libPaths() has them: on this project's CI, Debian's r-cran-* packages
# already provide them (the Makefile installs those first).
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3L)
  stop("usage: install-r-packages.R LIBRARY REPOSITORY 'name (>= version)' ...")
library <- args[[1L]]
repository <- args[[2L]]
wanted <- args[-(1:2)]

pattern <- "^\\s*([A-Za-z0-9.]+)\\s*(\\(>=\\s*([0-9.-]+)\\))?\\s*$"
if (!all(grepl(pattern, wanted)))
  stop("cannot read the requirements: ", paste(wanted, collapse = ", "))
names <- sub(pattern, "\\1", wanted)
minimum <- sub(pattern, "\\3", wanted)

dir.create(library, showWarnings = FALSE, recursive = TRUE)
.libPaths(c(library, .libPaths()))

satisfied <- function(name, minimum) {
  installed <- suppressWarnings(tryCatch(
    utils::packageVersion(name, lib.loc = .libPaths()),
    error = function(e) NULL
  ))
  !is.null(installed) && (!nzchar(minimum) || installed >= minimum)
}
missing <- !mapply(satisfied, names, minimum)
if (!any(missing))
  quit(status = 0L)

message("Installing R packages from ", repository, ": ",
        paste(wanted[missing], collapse = ", "), " ...")
options(warn = 1)
utils::install.packages(names[missing], lib = library, repos = repository,
                        quiet = TRUE, Ncpus = max(1L, parallel::detectCores()))
still <- !mapply(satisfied, names, minimum)
if (any(still))
  stop("still missing after install.packages(): ",
       paste(wanted[still], collapse = ", "), call. = FALSE)
