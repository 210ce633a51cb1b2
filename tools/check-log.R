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
# first to run (which pays the import of Keras and its backend) took more
# than SECONDS of CPU time (user + system). CPU time, not elapsed: `make test`
# runs the check beside other parts on two cores, which stretches elapsed
# time several-fold (an example of 1.1 s of CPU took 7 s) but hardly CPU time.
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
# A check's result ends its first line: "... OK", "... NOTE", "... [20s/104s]
# NOTE"; the incoming-feasibility check of a first submission without remote
# checks ends in "Note_to_CRAN_maintainers" and counts as no NOTE.
found <- 0L
for (i in seq_along(starts)) {
  head <- log[[starts[[i]]]]
  if (!grepl(" (NOTE|WARNING|ERROR)$", head)) next
  found <- found + 1L
  detail <- trimws(log[seq_len(ends[[i]] - starts[[i]]) + starts[[i]]])
  detail <- detail[nzchar(detail)]
  acceptable <- grepl("checking CRAN incoming feasibility ... NOTE", head,
                      fixed = TRUE) &&
    all(grepl("^(Maintainer: |New submission$)", detail))
  if (!acceptable)
    problems <- c(problems, paste(c(head, detail), collapse = "\n  "))
}
# The Status line counts the NOTEs, WARNINGs and ERRORs: a check whose result
# the loop above did not recognise would show as a difference.
status <- grep("^Status: ", log, value = TRUE)
if (!length(status)) {
  problems <- c(problems, "the check did not finish (no Status line)")
} else {
  counted <- sum(as.integer(regmatches(status, gregexpr("[0-9]+", status))[[1L]]))
  if (counted != found)
    problems <- c(problems, sprintf(
      "the log's %s counts %d results that are not OK; %d were read",
      status, counted, found))
}

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
  timings$cpu <- timings$user + timings$system
  others <- timings[-1L, ]
  slow <- others[others$cpu > as.numeric(threshold), ]
  if (nrow(slow))
    problems <- c(problems, paste0(
      "examples over ", threshold, " s of CPU time (the first to run, ",
      timings$name[[1L]], ", may pay the import of Keras): ",
      paste(sprintf("%s %.1f s", slow$name, slow$cpu), collapse = ", ")))
  slowest <- which.max(others$cpu)
  message(sprintf(paste0(
    "examples: %d; the first (%s) %.1f s of CPU, %.1f s elapsed; the slowest ",
    "of the others (%s) %.1f s of CPU, %.1f s elapsed"),
    nrow(timings), timings$name[[1L]], timings$cpu[[1L]], timings$elapsed[[1L]],
    others$name[[slowest]], others$cpu[[slowest]], others$elapsed[[slowest]]))
}

message(paste(tail(log, 3L), collapse = "\n"))
if (length(problems)) {
  message("R CMD check --as-cran in ", check_dir, " is not clean:\n- ",
          paste(problems, collapse = "\n- "))
  quit(status = 1L)
}
