# Builds the documentation site into docs/ (`make site`), with the kerasswa
# R package installed in R_LIBS and the Python that RETICULATE_PYTHON names,
# so that every reference example and every article runs. Any warning from
# pkgdown (a topic missing from the index, a link it cannot resolve) fails the
# build.

# Offline: pkgdown would otherwise ask CRAN and Bioconductor whether they
# host kerasswa, for a "View on CRAN" link.
options(pkgdown.internet = FALSE)
# downlit links `library(pkg)` for a package that is not installed (tfaddons,
# keras3) through CRAN's package database, which it downloads, and fails
# offline. Without the database such calls link to library()'s help only.
utils::assignInNamespace("CRAN_urls", function() NULL, ns = "downlit")

pkgdown_warnings <- character()
withCallingHandlers(
  pkgdown::build_site(preview = FALSE, install = FALSE, new_process = FALSE),
  warning = function(w) {
    pkgdown_warnings <<- c(pkgdown_warnings, conditionMessage(w))
    invokeRestart("muffleWarning")
  }
)

# README.md, the home page, links to files of the repository: the articles'
# sources and bench/RESULTS.md (which pkgdown turns into .html links). On the
# site they are the built articles; the Benchmarks article shows RESULTS.md.
home <- file.path("docs", "index.html")
html <- readLines(home, encoding = "UTF-8")
html <- gsub('href="bench/RESULTS.(md|html)"', 'href="articles/benchmarks.html"',
             html)
html <- gsub('href="vignettes/articles/([a-z-]+)\\.(Rmd|html)"',
             'href="articles/\\1.html"', html)
writeLines(html, home, useBytes = TRUE)

if (length(pkgdown_warnings) > 0L) {
  message("pkgdown warned:\n", paste("-", pkgdown_warnings, collapse = "\n"))
  quit(status = 1L)
}
