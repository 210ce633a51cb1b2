# The R code of the migration guide runs as written. The article
# (vignettes/articles/migrating.Rmd) holds its recipes as labelled ```{r label}
# chunks; these tests read the chunks from it and evaluate them, so the page
# and the tests cannot drift apart. Each recipe checks its own results with
# stopifnot() on numbers worked out in its text. The article is not part of
# the built package: under R CMD check the tests skip; `make test-r` runs them
# from the source tree.

article_path <- test_path("..", "..", "vignettes", "articles", "migrating.Rmd")

# The chunks of an R Markdown file whose engine is r, in document order: a
# list of list(label, error, code). `label` is "" for an unlabelled chunk;
# `error` is TRUE for a chunk knitted with `error = TRUE` (one that shows
# errors on purpose).
r_chunks <- function(path) {
  lines <- readLines(path, warn = FALSE)
  fences <- grep("^```\\s*$", lines)
  starts <- grep("^```\\{r[ ,}]", lines)
  lapply(starts, function(start) {
    header <- sub("^```\\{r[ ,]*(.*)\\}\\s*$", "\\1", lines[start])
    first <- trimws(strsplit(header, ",", fixed = TRUE)[[1]][1])
    end <- min(fences[fences > start])
    list(label = if (!is.na(first) && !grepl("=", first)) first else "",
         error = grepl("error\\s*=\\s*TRUE", header),
         code = lines[seq_len(end - start - 1L) + start])
  })
}

chunks <- if (file.exists(article_path)) r_chunks(article_path) else list()
labels <- vapply(chunks, `[[`, "", "label")

# Each recipe stands alone: it runs in a fresh environment.
recipes <- c("recipe-tfa", "recipe-swa-keras", "recipe-torch-ema",
             "recipe-torch-manual", "pretrained", "tutorial")

test_that("the migration guide holds every recipe", {
  skip_if_not(file.exists(article_path), "the articles are not in the package")
  expect_true(all(recipes %in% labels))
})

# Runs `code` in `env` from a fresh temporary directory, where the files it
# writes land.
run_chunk <- function(code, env) {
  dir <- tempfile("migrating-")
  dir.create(dir)
  old <- setwd(dir)
  on.exit({
    setwd(old)
    unlink(dir, recursive = TRUE)
  })
  utils::capture.output(eval(parse(text = code), envir = env))
}

for (label in recipes) {
  test_that(paste("the recipe", label, "runs"), {
    skip_if_not(file.exists(article_path), "the articles are not in the package")
    skip_if_no_kerasswa()
    env <- new.env(parent = globalenv())
    expect_no_error(run_chunk(chunks[[which(labels == label)]]$code, env))
    expect_gt(length(ls(env)), 0L)  # it ran, and made something
  })
}

# The other chunks show tensorflow-addons' defects, one after the other in a
# shared environment, as when the page is knitted. Two of them warn on
# purpose: the averages assigned before the first snapshot, and `lr`.
test_that("the examples of tensorflow-addons' defects run in order", {
  skip_if_not(file.exists(article_path), "the articles are not in the package")
  skip_if_no_kerasswa()
  rest <- chunks[!labels %in% c(recipes, "setup")]
  expect_gt(length(rest), 0L)
  env <- new.env(parent = globalenv())
  warnings <- character()
  collect <- function(w) {
    warnings <<- c(warnings, conditionMessage(w))
    invokeRestart("muffleWarning")
  }
  for (chunk in rest) {
    if (chunk$error) {
      # Each line shows an argument that kerasswa refuses, naming it.
      for (line in chunk$code)
        expect_error(run_chunk(line, env), "must be .*\nReceived: ")
    } else {
      expect_no_error(withCallingHandlers(run_chunk(chunk$code, env),
                                          warning = collect))
    }
  }
  expect_length(warnings, 2L)
  expect_match(warnings[1], "no snapshot of the weights has been averaged yet")
  expect_match(warnings[2], "`lr` is deprecated")
})
