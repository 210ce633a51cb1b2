# The R code blocks of README.md run as written, each in a fresh environment.
# README.md is not part of the built package: under R CMD check there is no
# README here, and the test skips; `make test-r` runs it from the source tree.

readme_path <- test_path("..", "..", "README.md")

# The lines of each block fenced by ```r (or ```{r}) and ```.
r_code_blocks <- function(path) {
  lines <- readLines(path, warn = FALSE)
  fences <- grep("^\\s*```", lines)
  starts <- grep("^\\s*```\\s*\\{?[rR]\\}?\\s*$", lines)
  blocks <- lapply(starts, function(start) {
    end <- min(c(fences[fences > start], length(lines) + 1L))
    lines[seq_len(end - start - 1L) + start]
  })
  stats::setNames(blocks, sprintf("README.md line %d", starts))
}

test_that("README.md has R code blocks", {
  skip_if_not(file.exists(readme_path), "README.md is not in the package")
  expect_gt(length(r_code_blocks(readme_path)), 0L)
})

blocks <- if (file.exists(readme_path)) r_code_blocks(readme_path) else list()
for (block in names(blocks)) {
  test_that(paste("the R code at", block, "runs"), {
    skip_if_no_kerasswa()
    env <- new.env(parent = globalenv())
    expect_no_error(utils::capture.output(
      eval(parse(text = blocks[[block]]), envir = env)
    ))
    expect_gt(length(ls(env)), 0L)  # it ran, and made something
  })
}
