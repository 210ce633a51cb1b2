# Every exported function has a roxygen example, and every example runs.

help_database <- function() {
  man <- test_path("..", "..", "man")
  if (dir.exists(man))  # the package loaded from source
    return(tools::Rd_db(dir = dirname(man)))
  tools::Rd_db("kerasswa")
}

test_that("every exported function has an example", {
  db <- help_database()
  has_examples <- vapply(db, function(rd)
    any(vapply(rd, attr, "", "Rd_tag") == "\\examples"), TRUE)
  aliases <- unlist(lapply(db[has_examples], function(rd) {
    tags <- vapply(rd, attr, "", "Rd_tag")
    vapply(rd[tags == "\\alias"], function(alias) alias[[1]], "")
  }))
  expect_setequal(setdiff(getNamespaceExports("kerasswa"), aliases),
                  character(0))
})

for (topic in names(help_database())) {
  test_that(paste("the examples of", topic, "run"), {
    skip_if_no_kerasswa()
    script <- tempfile(fileext = ".R")
    on.exit(unlink(script), add = TRUE)
    tools::Rd2ex(help_database()[[topic]], script)
    expect_true(file.exists(script))
    # In a child of the global environment, as example() would run them;
    # what they print (guarded examples echo themselves) is not wanted here.
    env <- new.env(parent = globalenv())
    expect_no_error(utils::capture.output(source(script, local = env)))
    # Guarded examples must have run, not been skipped by their guard.
    if (any(grepl("examplesIf", readLines(script))))
      expect_gt(length(ls(env)), 0L)
  })
}
