# Reads what R CMD check --as-cran left in a folder and fails unless the check
# is what CRAN would accept from this package: no ERROR, WARNING or NOTE but
# the incoming-feasibility NOTE that every first submission gets (its
# maintainer line, "New submission"), which no check run here can clear.
#
#   Rscript tools/check-log.R CHECK_DIR [no-python HOME] [examples SECONDS]
#
# `no-python HOME`: the check ran without Python; fail if any log shows that
# reticulate tried to download something (uv, a Python) or if its cache
# appeared in HOME. `examples SECONDS`: fail if an example other than the
# first to run (which pays the import of Keras and its backend) took longer
# than SECONDS of CPU or elapsed time.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1L)
  stop("usage: check-log.R CHECK_DIR [no-python HOME] [examples SECONDS]")
check_dir <- file.path(args[[1L]], "kerasswa.Rcheck")
options <- args[-1L]
option <- function(name) {
  at <- match(name, options)
  if (is.na(at)) NULL else options[[at + 1L]]
}
problems <- character()

log <- readLines(file.path(check_dir, "00check.log"), warn = FALSE)
# Each check is a line "* checking ... RESULT", followed by its detail
# (indented lines) until the next "* ".
starts <- grep("^\\* ", log)
ends <- c(starts[-1L] - 1L, length(log))
for (i in seq_along(starts)) {
  head <- log[[starts[[i]]]]
  if (!grepl("\\.\\.\\. ?(NOTE|WARNING|ERROR)", head)) next
  detail <- trimws(log[seq_len(ends[[i]] - starts[[i]]) + starts[[i]]])
  detail <- detail[nzchar(detail)]
  acceptable <- grepl("checking CRAN incoming feasibility ... NOTE", head,
                      fixed = TRUE) &&
    all(grepl("^(Maintainer: |New submission$)", detail))
  if (!acceptable)
    problems <- c(problems, paste(c(head, detail), collapse = "\n  "))
}
status <- grep("^Status: ", log, value = TRUE)
if (!length(status))
  problems <- c(problems, "the check did not finish (no Status line)")

home <- option("no-python")
if (!is.null(home)) {
  outputs <- list.files(check_dir, pattern = "\\.Rout(\\.fail)?$",
                        recursive = TRUE, full.names = TRUE)
  lines <- unlist(lapply(outputs, readLines, warn = FALSE))
  downloads <- grep("Downloading uv|astral\\.sh|cannot open URL|uv python install",
                    lines, value = TRUE)
  if (length(downloads))
    problems <- c(problems, paste0(
      "reticulate tried to download software ", length(downloads),
      " times, e.g.: ", downloads[[1L]]))
  cache <- file.path(home, ".cache", "R", "reticulate")
  if (dir.exists(cache))
    problems <- c(problems, paste("reticulate's cache appeared in HOME:", cache))
}

threshold <- option("examples")
if (!is.null(threshold)) {
  timings <- utils::read.table(file.path(check_dir, "kerasswa-Ex.timings"),
                               header = TRUE)
  cpu <- timings$user + timings$system
  slow <- timings[-1L, ][pmax(cpu, timings$elapsed)[-1L] > as.numeric(threshold), ]
  if (nrow(slow))
    problems <- c(problems, paste0(
      "examples over ", threshold, " s (the first to run, ", timings$name[[1L]],
      ", may pay the import of Keras): ",
      paste(sprintf("%s %.1f s", slow$name, slow$elapsed), collapse = ", ")))
  message(sprintf(
    "examples: %d, the first (%s) %.1f s elapsed, the slowest of the others %.1f s",
    nrow(timings), timings$name[[1L]], timings$elapsed[[1L]],
    max(timings$elapsed[-1L])))
}

message(paste(tail(log, 3L), collapse = "\n"))
if (length(problems)) {
  message("R CMD check --as-cran in ", check_dir, " is not clean:\n- ",
          paste(problems, collapse = "\n- "))
  quit(status = 1L)
}
