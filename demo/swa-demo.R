# Stochastic Weight Averaging on scikit-learn's handwritten digits.
#
# The same small network is trained twice from the same initial weights, on
# the same batches: once with plain SGD, once with optimizer_swa() around the
# same SGD. SWA does not touch the training trajectory (the middle row of the
# table equals the first), averages the weights over the second half of
# training, and swa_assign_averages() makes the average the final model (the
# last row). On a data set this small and easy, expect a gap of the order of
# the run-to-run noise; the point here is how the pieces fit together.
# Run it with `make demo`, or demo("swa-demo", package = "kerasswa").

library(keras3)
library(kerasswa)

sklearn_datasets <- reticulate::import("sklearn.datasets")

seed <- 42
epochs <- 40
batch_size <- 32
learning_rate <- 0.1
momentum <- 0.9

# 1797 images of 8 x 8 pixels (values 0 to 16) and their digits 0 to 9;
# shipped with scikit-learn, so nothing is downloaded.
digits <- sklearn_datasets$load_digits()
x <- digits$data / 16
y <- as.integer(digits$target)
set.seed(seed)
test_rows <- sample(nrow(x), round(0.3 * nrow(x)))
x_train <- x[-test_rows, ]
y_train <- y[-test_rows]
x_test <- x[test_rows, ]
y_test <- y[test_rows]

steps_per_epoch <- ceiling(nrow(x_train) / batch_size)
total_steps <- epochs * steps_per_epoch

# Same seed, so the same initial weights and the same shuffling of batches.
train <- function(optimizer) {
  set_random_seed(seed)
  model <- keras_model_sequential(input_shape = 64) |>
    layer_dense(64, activation = "relu") |>
    layer_dense(10, activation = "softmax")
  model |> compile(optimizer = optimizer,
                   loss = "sparse_categorical_crossentropy",
                   metrics = "accuracy")
  model |> fit(x_train, y_train, batch_size = batch_size, epochs = epochs,
               verbose = 0)
  model
}

test_scores <- function(model) {
  scores <- model |> evaluate(x_test, y_test, verbose = 0)
  unlist(scores[c("loss", "accuracy")])
}

started <- Sys.time()

sgd <- function() optimizer_sgd(learning_rate, momentum = momentum)
sgd_model <- train(sgd())

# A constant learning rate, as SWA wants; averaging starts halfway through
# training, with one snapshot per epoch.
swa_model <- train(optimizer_swa(
  sgd(),
  start_averaging = total_steps %/% 2,
  average_period = steps_per_epoch
))
snapshots <- swa_snapshot_count(swa_model)
swa_training_scores <- test_scores(swa_model)
swa_assign_averages(swa_model)

results <- rbind(
  "SGD, last weights" = test_scores(sgd_model),
  "SWA run, training weights" = swa_training_scores,
  "SWA run, averaged weights" = test_scores(swa_model)
)
colnames(results) <- c("test loss", "test accuracy")

cat(sprintf(paste0(
  "Digits: %d training and %d test images; %d epochs of %d steps, ",
  "SGD with learning rate %g and momentum %g.\n",
  "SWA averaged %d snapshots, one per epoch from step %d.\n\n"),
  nrow(x_train), nrow(x_test), epochs, steps_per_epoch, learning_rate, momentum,
  snapshots, total_steps %/% 2))
print(round(results, 4))
cat(sprintf("\nTrained and evaluated in %.1f s.\n",
            as.numeric(Sys.time() - started, units = "secs")))
