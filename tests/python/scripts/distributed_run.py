"""Trains a small model with SWA under a distribution setting and writes the
averaged weights and snapshot count to an .npz file.

Run as a separate process, because device layouts (TensorFlow logical
devices, XLA's host device count) must be fixed before the backend starts:

    python distributed_run.py MODE OUTPUT [WORKER_INDEX]

MODE is one of
- `single`: TensorFlow `fit` on one device, the reference for `mirrored`;
- `mirrored`: `fit` under MirroredStrategy over two logical CPUs;
- `single_loop`: a TensorFlow custom loop (`strategy.run` + `apply_gradients`)
  on one device, the reference for `multiworker`;
- `multiworker`: that loop under MultiWorkerMirroredStrategy (TF_CONFIG set by
  the caller). Keras 3's `fit` does not run under this strategy
  (keras-team/keras#20585), so the loop is TensorFlow's own route;
- `jax_single`, `jax_data_parallel` and `jax_model_parallel`: JAX `fit` on
  one device, under keras.distribution.DataParallel over two host devices,
  and under keras.distribution.ModelParallel with the hidden layer's kernel
  sharded over them (the file then also records the sharding of each
  weight's optimizer state).

Each mode trains one model per variant of the optimizer (VARIANTS): SWA's
mean, its moving average, manual snapshots at epoch ends, and SWAG; the file
holds, per variant, the counts, the weights and every optimizer variable.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

GLOBAL_BATCH = 16
EPOCHS = 3


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


VARIANTS = ("swa", "ema", "manual", "swag")


def build(keras, variant):
    from kerasswa import SWA, SWAG

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    inner = keras.optimizers.SGD(0.05, momentum=0.9)
    if variant == "swag":
        optimizer = SWAG(inner, start_averaging=3, average_period=2, max_rank=3)
    else:
        optimizer = SWA(
            inner,
            start_averaging=None if variant == "manual" else 3,
            average_period=2,
            averaging=0.75 if variant == "ema" else "mean",
        )
    model.compile(optimizer=optimizer, loss="mse")
    return model, optimizer


def snapshot_callbacks(keras, variant):
    """Manual snapshots at every epoch end, for the `manual` variant."""
    if variant != "manual":
        return []

    class SnapshotAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.take_snapshot()

    return [SnapshotAtEpochEnd()]


def custom_loop(tf, strategy, model, optimizer, dataset, variant):
    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                # Mean squared error over the global batch, as `fit` computes it.
                loss = tf.reduce_sum(tf.square(model(x, training=True) - y)) / GLOBAL_BATCH
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        strategy.run(replica_step, args=(x, y))

    for _ in range(EPOCHS):
        for x, y in strategy.experimental_distribute_dataset(dataset):
            step(x, y)
        if variant == "manual":
            optimizer.take_snapshot()


def fit(model, variant, keras, fit_data, **fit_kwargs):
    model.fit(
        fit_data[0],
        fit_data[1],
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=snapshot_callbacks(keras, variant),
        **fit_kwargs,
    )


def results(keras, variant, model, optimizer):
    """The counts, the averaged weights and every optimizer variable."""
    import numpy as np

    arrays = {
        f"{variant}/snapshot_count": optimizer.snapshot_count,
        f"{variant}/iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)),
    }
    # By position: automatic names differ between processes.
    for index, variable in enumerate(optimizer.variables):
        arrays[f"{variant}/optimizer/{index}"] = np.asarray(keras.ops.convert_to_numpy(variable))
    arrays[f"{variant}/optimizer_paths"] = np.array([v.path for v in optimizer.variables])
    optimizer.assign_average_vars(model.variables)
    for index, weight in enumerate(model.get_weights()):
        arrays[f"{variant}/weight{index}"] = weight
    return arrays


def shardings(optimizer):
    """For each weight and each optimizer variable made from it, the
    partition spec of its sharding, as text."""
    specs = {}
    # `layer/variable`, without the model's automatic name.
    names = [weight.path.split("/", 1)[1] for weight in optimizer._trainable_variables]
    for name, weight in zip(names, optimizer._trainable_variables):
        specs[f"sharding/{name}"] = str(tuple(weight.value.sharding.spec))
    state = [("average", optimizer.average_variables)]
    state += [("second_moment", optimizer.second_moment_variables)]
    state += [("deviations", optimizer.deviation_variables)]
    for kind, variables in state:
        for name, variable in zip(names, variables):
            specs[f"sharding/{name}/{kind}"] = str(tuple(variable.value.sharding.spec))
    return specs


def main(mode, output):
    import numpy as np

    x, y = data()
    arrays = {}
    if mode in ("single", "mirrored", "single_loop", "multiworker"):
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import tensorflow as tf

        if mode == "mirrored":
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2
            )
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        elif mode == "multiworker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.get_strategy()
        import keras

        # A dataset of the global batch, split across replicas by tf.distribute.
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
        for variant in VARIANTS:
            with strategy.scope():
                model, optimizer = build(keras, variant)
            if mode in ("single", "mirrored"):
                fit(model, variant, keras, (dataset, None))
            else:
                custom_loop(tf, strategy, model, optimizer, dataset, variant)
            arrays.update(results(keras, variant, model, optimizer))
    elif mode in ("jax_single", "jax_data_parallel", "jax_model_parallel"):
        os.environ["KERAS_BACKEND"] = "jax"
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax
        import keras

        assert len(jax.devices()) == 2, jax.devices()
        if mode == "jax_data_parallel":
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=jax.devices())
            )
        elif mode == "jax_model_parallel":
            mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], jax.devices())
            layout_map = keras.distribution.LayoutMap(mesh)
            # Layout map keys are full-match regular expressions on the path.
            layout_map[".*hidden/kernel"] = (None, "model")
            keras.distribution.set_distribution(
                keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
            )
        for variant in VARIANTS:
            model, optimizer = build(keras, variant)
            fit(model, variant, keras, (x, y), batch_size=GLOBAL_BATCH)
            if mode == "jax_model_parallel" and variant == "swag":
                arrays.update(shardings(optimizer))
            arrays.update(results(keras, variant, model, optimizer))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    np.savez(output, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
