# The bad-input matrix: one table of bad inputs across every exported
# function, each with the condition it must raise and a pattern its message
# must match, which names the argument at fault. Most inputs are refused in R
# (class `kerasswa_bad_argument`) before Python is touched; what only Python
# can judge comes back from reticulate as an R error whose message starts
# with the Python class ("ValueError: ..."); a few inputs are no error but do
# nothing, with a warning. After every row, no variable of the models below
# (their optimizers' included) has changed, and Python still answers.
#
# The calls name the models and data built in the test:
# * `model`: batch_norm_model() compiled with SWA around SGD with momentum,
#   trained for 4 updates (2 snapshots); `inner` is its SGD;
# * `plain`: the same, compiled with plain SGD and trained;
# * `uncompiled`: built but not compiled;
# * `unbuilt`: compiled with SWA but not built (no input shape, not trained);
# * `other`: compiled with `model`'s SWA optimizer, whose averages belong to
#   the variables of `model`, not to its own;
# * `frozen`: its only batch normalization is frozen;
# * `x`, `y`: 32 samples for the 4 inputs and 1 output of those models;
# * `scheduled`: an SGD whose learning rate is a schedule;
# * `keras2_sgd`: a Keras 2 (tf_keras) SGD; its row needs tf_keras.

R_REFUSAL <- "kerasswa_bad_argument"
PYTHON_ERRORS <- c("ValueError", "TypeError")
WARNINGS <- c("kerasswa_python_warning", "kerasswa_no_snapshot")

bad_input <- function(call, condition, pattern, needs = NULL) {
  list(call = substitute(call), condition = condition, pattern = pattern,
       needs = needs)
}

bad_inputs <- list(
  # optimizer_swa(): the optimizer to wrap.
  bad_input(optimizer_swa(NULL), R_REFUSAL,
            "^`optimizer` must be a Keras 3 optimizer.*Received: optimizer = NULL"),
  bad_input(optimizer_swa(0.1), R_REFUSAL,
            "^`optimizer` must be .*Received: optimizer = 0.1"),
  bad_input(optimizer_swa(list("sgd")), R_REFUSAL,
            "^`optimizer` must be .*Received: optimizer = list\\(\"sgd\"\\)"),
  bad_input(optimizer_swa(layer_dense(units = 2)), R_REFUSAL,
            "^`optimizer` must be .*Received: optimizer = <Python object of class keras\\..*Dense>"),
  bad_input(optimizer_swa(model$optimizer), R_REFUSAL,
            "^`optimizer` must be the optimizer that computes the updates, not an SWA optimizer \\(SWA cannot wrap SWA\\)"),
  bad_input(optimizer_swa(keras2_sgd), R_REFUSAL,
            "^`optimizer` must be a Keras 3 optimizer.*Received: optimizer = <Python object of class tf_keras\\.",
            needs = "tf_keras"),
  bad_input(optimizer_swa("sgdd"), "ValueError",
            "`optimizer` must name a Keras optimizer .*Received: optimizer='sgdd'"),
  bad_input(optimizer_swa(scheduled, decay = 0.1), "ValueError",
            "`decay` cannot be applied: the inner optimizer .* already follows a learning-rate schedule"),
  bad_input(optimizer_swa(inner, learning_rate = 0.3, clipnorm = 1, clipvalue = 1),
            R_REFUSAL,
            "^Give at most one of `clipnorm`, `clipvalue` and `global_clipnorm`"),
  bad_input(optimizer_swa(inner, lr = 0.1, learning_rate = 0.2), R_REFUSAL,
            "^Give `learning_rate` or its deprecated alias `lr`, not both"),
  bad_input(optimizer_swa(inner, momentum = 0.9), R_REFUSAL,
            "^`\\.\\.\\.` takes only `global_clipnorm` and `learning_rate`.*Received: momentum = 0.9"),

  # optimizer_swa(): counts, rates, name and flag.
  bad_input(optimizer_swa(inner, start_averaging = NA), R_REFUSAL,
            "^`start_averaging` must be NULL or a single whole number >= 0.\nReceived: start_averaging = NA$"),
  bad_input(optimizer_swa(inner, start_averaging = NaN), R_REFUSAL,
            "^`start_averaging` must be .*= NaN$"),
  bad_input(optimizer_swa(inner, start_averaging = -1), R_REFUSAL,
            "^`start_averaging` must be .*= -1$"),
  bad_input(optimizer_swa(inner, start_averaging = 2.5), R_REFUSAL,
            "^`start_averaging` must be .*= 2.5$"),
  bad_input(optimizer_swa(inner, average_period = Inf), R_REFUSAL,
            "^`average_period` must be a single whole number >= 1.*= Inf$"),
  bad_input(optimizer_swa(inner, average_period = 0), R_REFUSAL,
            "^`average_period` must be .*= 0$"),
  bad_input(optimizer_swa(inner, average_period = TRUE), R_REFUSAL,
            "^`average_period` must be .*= TRUE$"),
  bad_input(optimizer_swa(inner, average_period = "10"), R_REFUSAL,
            "^`average_period` must be .*= \"10\"$"),
  bad_input(optimizer_swa(inner, average_period = c(1, 2)), R_REFUSAL,
            "^`average_period` must be .*= c\\(1, 2\\)$"),
  bad_input(optimizer_swa(inner, average_period = integer(0)), R_REFUSAL,
            "^`average_period` must be .*= integer\\(0\\)$"),
  bad_input(optimizer_swa(inner, average_period = NULL), R_REFUSAL,
            "^`average_period` must be .*= NULL$"),
  bad_input(optimizer_swa(inner, clipnorm = -Inf), R_REFUSAL,
            "^`clipnorm` must be NULL or a single finite number > 0.*= -Inf$"),
  bad_input(optimizer_swa(inner, clipvalue = NaN), R_REFUSAL,
            "^`clipvalue` must be NULL or a single finite number > 0.*= NaN$"),
  bad_input(optimizer_swa(inner, decay = -0.1), R_REFUSAL,
            "^`decay` must be NULL or a single finite number >= 0.*= -0.1$"),
  bad_input(optimizer_swa(inner, lr = "0.1"), R_REFUSAL,
            "^`lr` must be NULL or a single finite number > 0.*= \"0.1\"$"),
  bad_input(optimizer_swa(inner, learning_rate = Inf), R_REFUSAL,
            "^`learning_rate` must be NULL, a single finite number > 0, a Keras learning-rate schedule.*or a function of no arguments.*= Inf$"),
  bad_input(optimizer_swa(inner, learning_rate = function(step) 0.1 * 0.9^step), R_REFUSAL,
            "^`learning_rate` must be a function of no arguments: Keras calls .*learning-rate schedule.*Received: learning_rate = a function of `step`$"),
  bad_input(optimizer_swa(inner, name = ""), R_REFUSAL,
            "^`name` must be NULL or a single non-empty string"),
  bad_input(optimizer_swa(inner, sequential_update = NA), R_REFUSAL,
            "^`sequential_update` must be TRUE or FALSE.*= NA$"),
  bad_input(optimizer_swa(inner, averaging = "ema"), R_REFUSAL,
            "^`averaging` must be \"mean\", a single number in \\(0, 1\\).*averaging_ema\\(\\).*= \"ema\"$"),
  bad_input(optimizer_swa(inner, averaging = 1), R_REFUSAL,
            "^`averaging` must be \"mean\", a single number in \\(0, 1\\).*= 1$"),

  # averaging_ema(), averaging_power_ema(): the rules.
  bad_input(averaging_ema(decay = 1), R_REFUSAL,
            "^`decay` must be a single number in \\(0, 1\\).*= 1$"),
  bad_input(averaging_ema(0.9, min_decay = 0.95), R_REFUSAL,
            "^`min_decay` must be a single number in \\[0, decay\\].*= 0.95$"),
  bad_input(averaging_power_ema(sigma_rel = 0.5), R_REFUSAL,
            "^`sigma_rel` must be a single number in \\(0, sqrt\\(1/12\\).*= 0.5$"),
  bad_input(averaging_power_ema(gamma = -1), R_REFUSAL,
            "^`gamma` must be a single finite number >= 0.*= -1$"),

  # optimizer_posthoc_ema(), callback_posthoc_ema_checkpoint(),
  # posthoc_ema(), posthoc_ema_error().
  bad_input(optimizer_posthoc_ema(inner, sigma_rels = c(0.1, 0.1)), R_REFUSAL,
            "^`sigma_rels` must be a numeric vector of distinct numbers.*= c\\(0.1, 0.1\\)$"),
  bad_input(optimizer_posthoc_ema(inner, averaging = 0.9), R_REFUSAL,
            "^optimizer_posthoc_ema\\(\\) keeps one power EMA .*= 0.9$"),
  bad_input(callback_posthoc_ema_checkpoint(tempdir(), save_freq = 0), R_REFUSAL,
            "^`save_freq` must be \"epoch\" or a single whole number >= 1.*= 0$"),
  bad_input(posthoc_ema(x, tempdir(), 0.1), R_REFUSAL,
            "^`model` must be a Keras model.\nReceived: model = <double array"),
  bad_input(posthoc_ema(model, tempdir(), 0.1, 0.2), R_REFUSAL,
            "^Give exactly one of `sigma_rel` and `gamma`"),
  bad_input(posthoc_ema(model, file.path(tempdir(), "no-such-folder"), 0.1), "ValueError",
            "`folder` is not a folder.*no-such-folder"),
  bad_input(posthoc_ema_error(0.1, 100, 0), R_REFUSAL,
            "^`save_every` must be a single whole number >= 1.*= 0$"),

  # optimizer_swag(): its own arguments (the others are optimizer_swa()'s).
  bad_input(optimizer_swag(inner, max_rank = -1), R_REFUSAL,
            "^`max_rank` must be a single whole number >= 0.*= -1$"),
  bad_input(optimizer_swag(inner, var_clamp = NA), R_REFUSAL,
            "^`var_clamp` must be a single finite number >= 0.*= NA$"),
  bad_input(optimizer_swag(inner, averaging = 0.5), R_REFUSAL,
            "^optimizer_swag\\(\\) fits its Gaussian to the plain mean .*= 0.5$"),

  # swa_assign_averages(), with_swa_weights(), swa_evaluate(),
  # swa_snapshot_count(): a model trained with SWA, and its evaluation.
  bad_input(swa_assign_averages(x), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*Received: model = <double array of dimensions 32 x 4>"),
  bad_input(swa_assign_averages(uncompiled), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*\\(not compiled\\)$"),
  bad_input(swa_assign_averages(plain), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*compiled with <Python object of class keras\\..*SGD>$"),
  bad_input(swa_assign_averages(other), "ValueError",
            "`assign_average_vars` was given the trainable variable .*, which this optimizer was not built with"),
  bad_input(swa_assign_averages(unbuilt), "kerasswa_no_snapshot",
            "^swa_assign_averages\\(\\): no snapshot of the weights has been averaged yet .*, so the weights are unchanged"),
  # Refused before `expr` runs: it would change `model`.
  bad_input(with_swa_weights(plain, inner$iterations$assign(0)), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\)"),
  bad_input(with_swa_weights(other, predict(other, x, verbose = 0)), "ValueError",
            "`use_average_vars` was given the trainable variable .*, which this optimizer was not built with"),
  # Fails with the averages in the model, which must then be taken out (on
  # JAX, Keras's failed predict() leaves the variables empty as well).
  bad_input(with_swa_weights(model, predict(model, x[, 1:3], verbose = 0)),
            "ValueError", "expected axis -1 of input shape to have value 4"),
  bad_input(swa_evaluate(uncompiled, x, y), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\)"),
  bad_input(swa_evaluate(model, x, y, batch_size = 2.5), R_REFUSAL,
            "^`batch_size` must be NULL or a single whole number >= 1.*= 2.5$"),
  bad_input(swa_evaluate(model, x, y, steps = -1), R_REFUSAL,
            "^`steps` must be NULL or a single whole number >= 1.*= -1$"),
  bad_input(swa_evaluate(model, x[, 1:3], y, verbose = 0), "ValueError",
            "expected axis -1 of input shape to have value 4"),
  bad_input(swa_snapshot_count(NULL), R_REFUSAL,
            "^`object` must be an optimizer made by optimizer_swa\\(\\), or a Keras model compiled with one.*= NULL$"),
  bad_input(swa_snapshot_count(inner), R_REFUSAL,
            "^`object` must be an optimizer made by optimizer_swa\\(\\).*<Python object of class keras\\..*SGD>$"),
  bad_input(swa_snapshot_count(plain), R_REFUSAL,
            "^`object` must be an optimizer made by optimizer_swa\\(\\).*compiled with <Python object of class keras\\..*SGD>$"),
  bad_input(swa_take_snapshot(x), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*= <double array of dimensions 32 x 4>$"),
  bad_input(swa_take_snapshot(plain), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swa\\(\\).*compiled with <Python object of class keras\\..*SGD>$"),
  bad_input(swa_take_snapshot(unbuilt), "ValueError",
            "`take_snapshot` needs a built optimizer"),

  # with_swag_sample(), swag_predict(): a model trained with SWAG.
  bad_input(with_swag_sample(model, predict(model, x, verbose = 0)), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swag\\(\\).*compiled with <Python object of class kerasswa\\.swa\\.SWA>$"),
  bad_input(swag_predict(plain, x), R_REFUSAL,
            "^`model` must be a Keras model compiled with optimizer_swag\\(\\).*compiled with <Python object of class keras\\..*SGD>$"),

  # swa_update_bn().
  bad_input(swa_update_bn(x, x), R_REFUSAL,
            "^`model` must be a Keras model.\nReceived: model = <double array"),
  bad_input(swa_update_bn(unbuilt, x), "ValueError",
            "`update_bn` needs a built model.*Received: model='.*' \\(not built\\)"),
  bad_input(swa_update_bn(model, numeric(0)), R_REFUSAL,
            "^`data` must be a non-empty R array or matrix of finite numbers.*= numeric\\(0\\)$"),
  bad_input(swa_update_bn(model, replace(x, 5, NaN)), R_REFUSAL,
            "^`data` must be a non-empty R array or matrix of finite numbers.*= <double array of dimensions 32 x 4>$"),
  bad_input(swa_update_bn(model, replace(x, 5, Inf)), R_REFUSAL,
            "^`data` must be a non-empty R array or matrix of finite numbers"),
  bad_input(swa_update_bn(model, reticulate::r_to_py(list())), "ValueError",
            "`data` gave no batches"),
  # The first batch already fails, before any statistic is updated.
  bad_input(swa_update_bn(model, x[, 1:3]), "ValueError",
            "expected axis -1 of input shape to have value 4"),
  bad_input(swa_update_bn(model, x, batch_size = NA), R_REFUSAL,
            "^`batch_size` must be a single whole number >= 1.*= NA$"),
  bad_input(swa_update_bn(model, x, steps = 0), R_REFUSAL,
            "^`steps` must be NULL or a single whole number >= 1.*= 0$"),
  bad_input(swa_update_bn(model, x, verbose = 2), R_REFUSAL,
            "^`verbose` must be 0, 1, FALSE or TRUE.*= 2$"),
  bad_input(swa_update_bn(frozen, x), "kerasswa_python_warning",
            "^`update_bn` did nothing: model '.*' has no trainable BatchNormalization layer"),

  # learning_rate_schedule_swa().
  bad_input(learning_rate_schedule_swa(NA, 0.01, 5), R_REFUSAL,
            "^`base_learning_rate` must be a Keras learning-rate schedule, or a single finite number > 0.*= NA$"),
  bad_input(learning_rate_schedule_swa(layer_dense(units = 2), 0.01, 5), R_REFUSAL,
            "^`base_learning_rate` must be .*<Python object of class keras\\..*Dense>$"),
  bad_input(learning_rate_schedule_swa(0.1, -Inf, 5), R_REFUSAL,
            "^`swa_learning_rate` must be a single finite number > 0.*= -Inf$"),
  bad_input(learning_rate_schedule_swa(0.1, 0.01, -1), R_REFUSAL,
            "^`start_averaging` must be a single whole number >= 0.*= -1$"),
  bad_input(learning_rate_schedule_swa(0.1, 0.01, 5, anneal_strategy = "cosine"),
            R_REFUSAL,
            "^`anneal_strategy` must be one of \"cos\", \"linear\".*= \"cosine\"$"),
  bad_input(learning_rate_schedule_swa(0.1, 0.01, 5, anneal_steps = 3, cycle_length = 4),
            R_REFUSAL,
            "^Give `anneal_steps` or `cycle_length`, not both.*anneal_steps = 3, cycle_length = 4$"),
  bad_input(learning_rate_schedule_swa(0.1, 0.01, 5, cycle_length = 0), R_REFUSAL,
            "^`cycle_length` must be NULL or a single whole number >= 1.*= 0$"),
  bad_input(learning_rate_schedule_swa(0.1, 0.01, 5, name = 1), R_REFUSAL,
            "^`name` must be NULL or a single non-empty string.*= 1$"),

  # callback_swa(), and the callback given to fit().
  bad_input(callback_swa(bn_data = x, average_non_trainable = TRUE), R_REFUSAL,
            "^Give `bn_data` .* or `average_non_trainable = TRUE` .*, not both"),
  bad_input(callback_swa(bn_data = list()), R_REFUSAL,
            "^`bn_data` must be a non-empty R array .*= list\\(\\)$"),
  bad_input(callback_swa(bn_batch_size = 2.5), R_REFUSAL,
            "^`bn_batch_size` must be a single whole number >= 1.*= 2.5$"),
  bad_input(callback_swa(validation_data = list(x)), R_REFUSAL,
            "^`validation_data` must be NULL or a list of 2 or 3 elements.*= list\\(<double array of dimensions 32 x 4>\\)$"),
  bad_input(callback_swa(validation_data = as.data.frame(x)), R_REFUSAL,
            "^`validation_data` must be NULL or a list of 2 or 3 elements.*= <data frame of 32 rows and 4 columns>$"),
  bad_input(callback_swa(finish_after_epoch = 0), R_REFUSAL,
            "^`finish_after_epoch` must be NULL or a single whole number >= 1.*= 0$"),
  bad_input(callback_swa(verbose = NA), R_REFUSAL,
            "^`verbose` must be 0, 1, FALSE or TRUE.*= NA$"),
  bad_input(callback_swa(start_epoch = 0), R_REFUSAL,
            "^`start_epoch` must be NULL or a single whole number >= 1.*= 0$"),
  # `model` takes snapshots itself, from update 1.
  bad_input(fit(model, x, y, epochs = 1, verbose = 0,
                callbacks = list(callback_swa(start_epoch = 1))), "ValueError",
            "SWACallback\\(start_epoch=1\\) takes the snapshots itself.*`start_averaging=None`"),
  bad_input(fit(plain, x, y, epochs = 1, verbose = 0,
                callbacks = list(callback_swa())), "TypeError",
            "SWACallback needs a model compiled with a kerasswa.SWA optimizer.*optimizer is <keras\\..*SGD"),
  # `model` has one SWA average, not the power EMAs of a post-hoc EMA.
  bad_input(fit(model, x, y, epochs = 1, verbose = 0,
                callbacks = list(callback_posthoc_ema_checkpoint(tempdir()))), "TypeError",
            "PostHocEMACheckpoint needs a model compiled with a kerasswa.PostHocEMA optimizer")
)

# Runs `row$call` in `env` and expects its condition and message.
expect_bad_input <- function(row, env) {
  label <- paste(deparse(row$call, width.cutoff = 500L), collapse = " ")
  if (row$condition %in% PYTHON_ERRORS) {
    expect_error(eval(row$call, env), label = label,
                 regexp = paste0("^", row$condition, ": .*", row$pattern))
  } else if (row$condition %in% WARNINGS) {
    expect_warning(eval(row$call, env), label = label,
                   class = row$condition, regexp = row$pattern)
  } else {
    expect_error(eval(row$call, env), label = label,
                 class = row$condition, regexp = row$pattern)
  }
  invisible(label)
}

# The values of the variables of `models` and of their optimizers, by path,
# so that a difference names the variable. One call into Python per model:
# one per variable would make up most of the test's time.
variable_values <- function(models) {
  values_by_path <- reticulate::py_eval(
    "lambda variables: {v.path: v.numpy() for v in variables}"
  )
  lapply(models, function(model) {
    optimizer <- if (reticulate::py_has_attr(model, "optimizer"))
      model$optimizer
    values <- values_by_path(c(model$variables,
                               if (!is.null(optimizer)) optimizer$variables))
    lapply(values, as.vector)  # plain vectors: waldo cannot show arrays
  })
}

test_that("every bad input is refused, names its argument and changes nothing", {
  skip_if_no_kerasswa()
  data <- linear_data(32L)
  x <- data$x
  y <- data$y

  model <- batch_norm_model(optimizer_swa(
    optimizer_sgd(learning_rate = 0.05, momentum = 0.9),
    start_averaging = 1, average_period = 2
  ))
  model |> fit(x, y, batch_size = 8, epochs = 1, verbose = 0)
  expect_identical(swa_snapshot_count(model), 2L)  # updates 1 and 3
  inner <- model$optimizer$inner_optimizer
  # Trained, so that fit() has nothing left to build.
  plain <- batch_norm_model("sgd")
  plain |> fit(x, y, batch_size = 8, epochs = 1, verbose = 0)
  uncompiled <- batch_norm_model()
  unbuilt <- keras_model_sequential() |>
    layer_batch_normalization() |>
    layer_dense(1)
  unbuilt |> compile(optimizer = optimizer_swa("sgd"), loss = "mse")
  other <- batch_norm_model(model$optimizer)
  frozen <- batch_norm_model()
  freeze_weights(frozen, to = 1)  # its batch normalization
  scheduled <- optimizer_sgd(learning_rate_schedule_exponential_decay(
    0.1, decay_steps = 10, decay_rate = 0.9
  ))
  keras2_sgd <- if (reticulate::py_module_available("tf_keras"))
    reticulate::import("tf_keras")$optimizers$SGD(0.1)

  expect_gte(length(bad_inputs), 40L)
  models <- list(model = model, plain = plain, uncompiled = uncompiled,
                 unbuilt = unbuilt, other = other, frozen = frozen)
  values <- variable_values(models)
  for (row in bad_inputs) {
    if (!all(vapply(row$needs, reticulate::py_module_available, TRUE)))
      next
    label <- expect_bad_input(row, environment())
    # Each row is judged against the values just before it, so that a row
    # that changes a variable is the only one to fail.
    before <- values
    values <- variable_values(models)
    expect_identical(values, before,
                     label = paste("the variables after", label))
  }
  expect_identical(reticulate::py_eval("1 + 1"), 2L)
})
