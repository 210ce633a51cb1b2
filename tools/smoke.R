# Smoke test of an installed kerasswa (make test-install): load it from the
# library KERASSWA_SMOKE_LIBRARY names, train a linear model with SWA for 16
# updates (6 snapshots), keep the averages, save and load.
library(keras3)
library(kerasswa)

library_path <- normalizePath(Sys.getenv("KERASSWA_SMOKE_LIBRARY"))
installed_in <- normalizePath(dirname(find.package("kerasswa")))
if (!identical(installed_in, library_path))
  stop("kerasswa was loaded from ", installed_in, ", not from ", library_path)

set.seed(1)
x <- matrix(runif(256), ncol = 4)
y <- x %*% c(1, -2, 3, 0.5)
model <- keras_model_sequential(input_shape = 4) |> layer_dense(1)
model |> compile(
  optimizer = optimizer_swa(optimizer_sgd(0.05), start_averaging = 4,
                            average_period = 2),
  loss = "mse"
)
model |> fit(x, y, batch_size = 8, epochs = 2, verbose = 0)
stopifnot(swa_snapshot_count(model) == 6)
swa_assign_averages(model)
path <- tempfile(fileext = ".keras")
save_model(model, path)
restored <- load_model(path)
unlink(path)
stopifnot(identical(predict(model, x, verbose = 0), predict(restored, x, verbose = 0)))
cat(sprintf("kerasswa %s from %s: %d snapshots on %s, saved and loaded\n",
            utils::packageVersion("kerasswa"), installed_in,
            swa_snapshot_count(model), config_backend()))
