# Argument checks shared by the exported functions.
#
# Each check runs before Python is touched, returns the value in the type the
# Python side expects, and otherwise stops with an error that names the
# argument, shows the value received and says what is expected. `arg` defaults
# to the caller's argument name and `call` to the caller's call, so the error
# reads as if it came from the exported function itself.

stop_bad_argument <- function(arg, value, expected, call,
                              received = describe_value(value)) {
  stop_kerasswa(
    sprintf("`%s` must be %s.\nReceived: %s = %s",
            arg, expected, arg, received),
    call = call
  )
}

stop_kerasswa <- function(message, call) {
  stop(errorCondition(message, class = "kerasswa_bad_argument", call = call))
}

describe_value <- function(x) {
  if (inherits(x, "python.builtin.object"))
    return(sprintf("<Python object of class %s>", class(x)[[1]]))
  if (is.function(x))
    return("<function>")
  text <- paste(deparse(x, width.cutoff = 60L, nlines = 3L), collapse = " ")
  if (nchar(text) > 80L)
    text <- paste0(substr(text, 1L, 77L), "...")
  text
}

is_single_number <- function(x) {
  is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x)
}

# R's `10` is a double: whole numbers go to Python as integers from here, the
# one place that coerces them, so that nobody has to write `10L`.
as_count <- function(x, minimum, arg = deparse(substitute(x)),
                     call = sys.call(-1L)) {
  if (!is_single_number(x) || x != trunc(x) || x < minimum ||
      x > .Machine$integer.max)
    stop_bad_argument(arg, x, sprintf("a single whole number >= %d", minimum),
                      call)
  as.integer(x)
}

# `NULL` stands for Python's `None` and passes through unchanged.
as_optional_rate <- function(x, allow_zero = FALSE,
                             arg = deparse(substitute(x)),
                             call = sys.call(-1L)) {
  if (is.null(x))
    return(NULL)
  if (!is_single_number(x) || x < 0 || (x == 0 && !allow_zero)) {
    bound <- if (allow_zero) ">= 0" else "> 0"
    stop_bad_argument(arg, x, paste("NULL or a single finite number", bound),
                      call)
  }
  as.double(x)
}

check_flag <- function(x, arg = deparse(substitute(x)), call = sys.call(-1L)) {
  if (!is.logical(x) || length(x) != 1L || is.na(x))
    stop_bad_argument(arg, x, "TRUE or FALSE", call)
  x
}

check_string <- function(x, arg = deparse(substitute(x)),
                         call = sys.call(-1L)) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x))
    stop_bad_argument(arg, x, "a single non-empty string", call)
  x
}

# Only these Python objects can be trained with; Keras 2 (tf_keras) optimizers
# cannot, and their class names start with another module.
is_keras_optimizer <- function(x) {
  inherits(x, "python.builtin.object") &&
    any(grepl("^keras\\.(src\\.)?optimizers\\.", class(x)))
}

is_swa_optimizer <- function(x) {
  inherits(x, "kerasswa.swa.SWA")
}

check_optimizer <- function(x, arg = deparse(substitute(x)),
                            call = sys.call(-1L)) {
  if (is_swa_optimizer(x))
    stop_bad_argument(arg, x, paste(
      "the optimizer that computes the updates, not an SWA optimizer",
      "(SWA cannot wrap SWA)"), call)
  is_name <- is.character(x) && length(x) == 1L && !is.na(x) && nzchar(x)
  if (!is_name && !is_keras_optimizer(x))
    stop_bad_argument(arg, x, paste(
      "a Keras 3 optimizer, such as keras3's optimizer_sgd() or",
      "keras$optimizers$SGD(), or the name of one, such as \"sgd\""), call)
  x
}

# `...` of the exported functions forwards a few Python arguments by name; any
# other name is a typo or belongs to the inner optimizer, so it is refused.
check_dots <- function(dots, allowed, call = sys.call(-1L)) {
  given <- names(dots)
  if (is.null(given))
    given <- rep("", length(dots))
  refused <- !given %in% allowed | duplicated(given)
  if (any(refused)) {
    received <- sprintf("%s = %s",
                        ifelse(nzchar(given), given, "<unnamed>"),
                        vapply(dots, describe_value, ""))[refused]
    stop_kerasswa(
      sprintf(paste0("`...` takes only %s, each at most once and by name ",
                     "(set other arguments on the inner optimizer).\n",
                     "Received: %s"),
              paste0("`", allowed, "`", collapse = " and "),
              paste(received, collapse = ", ")),
      call = call
    )
  }
  dots
}
