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
  if (is.data.frame(x))
    return(sprintf("<data frame of %d rows and %d columns>", nrow(x), ncol(x)))
  # Data would deparse into a wall of numbers; its shape says more.
  if (is.atomic(x) && length(dim(x)) > 0L)
    return(sprintf("<%s array of dimensions %s>", typeof(x),
                   paste(dim(x), collapse = " x ")))
  text <- if (is.list(x) && !is.object(x) && length(x) > 0L) {
    items <- vapply(x, describe_value, "", USE.NAMES = FALSE)
    labels <- names(x)
    if (!is.null(labels))
      items <- ifelse(nzchar(labels), paste(labels, "=", items), items)
    paste0("list(", paste(items, collapse = ", "), ")")
  } else {
    paste(deparse(x, width.cutoff = 60L, nlines = 3L), collapse = " ")
  }
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
                     call = sys.call(-1L),
                     expected = "a single whole number") {
  if (!is_single_number(x) || x != trunc(x) || x < minimum ||
      x > .Machine$integer.max)
    stop_bad_argument(arg, x, sprintf("%s >= %d", expected, minimum), call)
  as.integer(x)
}

# `NULL` stands for Python's `None` and passes through unchanged.
as_optional_count <- function(x, minimum, arg = deparse(substitute(x)),
                              call = sys.call(-1L)) {
  if (is.null(x))
    return(NULL)
  as_count(x, minimum, arg = arg, call = call,
           expected = "NULL or a single whole number")
}

as_rate <- function(x, allow_zero = FALSE, arg = deparse(substitute(x)),
                    call = sys.call(-1L), expected = "a single finite number") {
  if (!is_single_number(x) || x < 0 || (x == 0 && !allow_zero)) {
    bound <- if (allow_zero) ">= 0" else "> 0"
    stop_bad_argument(arg, x, paste(expected, bound), call)
  }
  as.double(x)
}

as_optional_rate <- function(x, allow_zero = FALSE,
                             arg = deparse(substitute(x)),
                             call = sys.call(-1L)) {
  if (is.null(x))
    return(NULL)
  as_rate(x, allow_zero, arg = arg, call = call,
          expected = "NULL or a single finite number")
}

# The averaging rule of SWA: "mean", the decay of an exponential moving
# average, strictly between 0 and 1 (1 would never move, 0 is no average), or
# a rule made by averaging_ema() or averaging_power_ema().
as_averaging <- function(x, arg = deparse(substitute(x)),
                         call = sys.call(-1L)) {
  if (identical(x, "mean") || is_averaging_rule(x))
    return(x)
  if (!is_single_number(x) || x <= 0 || x >= 1)
    stop_bad_argument(arg, x, paste(
      "\"mean\", a single number in (0, 1) (the decay of an exponential",
      "moving average), averaging_ema() or averaging_power_ema()"), call)
  as.double(x)
}

# A seed for Keras's random draws: NULL (a fresh draw each time), a whole
# number >= 0 (the same number gives the same draw), or a Keras
# SeedGenerator (keras3's `random_seed_generator()`), drawn from in turn.
as_seed <- function(x, arg = deparse(substitute(x)), call = sys.call(-1L)) {
  if (inherits(x, "python.builtin.object") &&
      any(grepl("SeedGenerator$", class(x))))
    return(x)
  if (!is.null(x) && (!is_single_number(x) || x != trunc(x) || x < 0 ||
                      x > .Machine$integer.max))
    stop_bad_argument(arg, x, paste(
      "NULL, a single whole number >= 0, or a Keras SeedGenerator",
      "(keras3's random_seed_generator())"), call)
  if (is.null(x)) NULL else as.integer(x)
}

# A learning rate: NULL, a number > 0, a Keras learning-rate schedule (which
# Keras calls with the step), or a function that Keras calls with no argument
# (Keras's optimizers take all of them).
as_learning_rate <- function(x, arg = deparse(substitute(x)),
                             call = sys.call(-1L)) {
  if (is_learning_rate_schedule(x))
    return(x)
  if (is.function(x)) {
    needs <- required_arguments(x)
    if (length(needs) > 0L)
      stop_bad_argument(
        arg, x, paste(
          "a function of no arguments: Keras calls a learning-rate function",
          "with none. For a rate that depends on the step, give a",
          "learning-rate schedule such as",
          "learning_rate_schedule_exponential_decay()"),
        call,
        received = sprintf("a function of %s",
                           paste0("`", needs, "`", collapse = ", "))
      )
    return(x)
  }
  if (is.null(x) || is_single_number(x) && x > 0)
    return(as_optional_rate(x, arg = arg, call = call))
  stop_bad_argument(arg, x, paste(
    "NULL, a single finite number > 0, a Keras learning-rate schedule",
    "such as learning_rate_schedule_exponential_decay(), or a function of",
    "no arguments"), call)
}

# The arguments of function `f` that a call with none would miss.
required_arguments <- function(f) {
  parameters <- formals(args(f))  # args(): primitives too
  missing <- vapply(names(parameters),
                    function(name) identical(parameters[[name]], quote(expr = )),
                    logical(1L))
  setdiff(names(parameters)[missing], "...")
}

# Progress output of the Python functions: 0 (silent) or 1 (a progress bar).
as_verbose <- function(x, arg = deparse(substitute(x)), call = sys.call(-1L)) {
  if (!(is.numeric(x) || is.logical(x)) || length(x) != 1L || is.na(x) ||
      !x %in% c(0, 1))
    stop_bad_argument(arg, x, "0, 1, FALSE or TRUE", call)
  as.integer(x)
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

check_optional_string <- function(x, arg = deparse(substitute(x)),
                                  call = sys.call(-1L)) {
  if (!is.null(x) && (!is.character(x) || length(x) != 1L || is.na(x) ||
                      !nzchar(x)))
    stop_bad_argument(arg, x, "NULL or a single non-empty string", call)
  x
}

# match.arg() with the choices in the caller's formals, whose own error names
# `arg` rather than the argument.
match_choice <- function(x, arg = deparse(substitute(x)),
                         call = sys.call(-1L)) {
  choices <- eval(formals(sys.function(-1L))[[arg]])
  tryCatch(
    match.arg(x, choices),
    error = function(e) stop_bad_argument(
      arg, x, paste("one of", paste0("\"", choices, "\"", collapse = ", ")),
      call
    )
  )
}

# Data handed to a Keras model: an R array (a vector becomes a 1-d array, as
# Keras wants, where reticulate would make it a Python list), a list of them
# for a model with several inputs, or a Python object (a NumPy array, a
# tf.data.Dataset, a PyDataset, a generator), which Python judges.
as_model_data <- function(x, arg = deparse(substitute(x)),
                          call = sys.call(-1L)) {
  force(arg)  # before `x` changes
  if (inherits(x, "python.builtin.object"))
    return(x)
  # Inf would not stop Keras: it would turn the statistics of a
  # batch-normalization pass into NaN without a word.
  if (is.numeric(x) && length(x) > 0L && !is.object(x) && all(is.finite(x))) {
    if (is.null(dim(x)))
      x <- as.array(x)
    return(x)
  }
  if (is.list(x) && !is.object(x) && length(x) > 0L) {
    for (i in seq_along(x))
      x[i] <- list(as_model_data(x[[i]], arg = sprintf("%s[[%d]]", arg, i),
                                 call = call))
    return(x)
  }
  stop_bad_argument(arg, x, paste(
    "a non-empty R array or matrix of finite numbers, a list of them (one",
    "per input), or a Python object such as a NumPy array or a",
    "tf.data.Dataset"),
    call)
}

# `(x, y)` or `(x, y, sample_weight)`: from R, a list of 2 or 3 (made a
# Python tuple by the caller, which starts Python), or a Python tuple.
as_validation_data <- function(x, arg = deparse(substitute(x)),
                               call = sys.call(-1L)) {
  if (is.null(x))
    return(NULL)
  if (inherits(x, "python.builtin.tuple") &&
      reticulate::py_len(x) %in% 2:3)
    return(x)
  if (!is.list(x) || is.object(x) || !length(x) %in% 2:3)
    stop_bad_argument(arg, x, paste(
      "NULL or a list of 2 or 3 elements: list(x, y) or",
      "list(x, y, sample_weight)"), call)
  as_model_data(x, arg = arg, call = call)
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
      "a Keras 3 optimizer, such as optimizer_sgd() or optimizer_adam(),",
      "or the name of one, such as \"sgd\""), call)
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
              enumerate_names(allowed),
              paste(received, collapse = ", ")),
      call = call
    )
  }
  dots
}

# "`a`", "`a` and `b`", "`a`, `b` and `c`".
enumerate_names <- function(names) {
  quoted <- paste0("`", names, "`")
  if (length(quoted) < 2L)
    return(quoted)
  paste(paste(quoted[-length(quoted)], collapse = ", "),
        quoted[length(quoted)], sep = " and ")
}
