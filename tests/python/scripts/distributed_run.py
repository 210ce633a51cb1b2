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
- `jax_single` and `jax_data_parallel`: JAX `fit` on one device, and under
  keras.distribution.DataParallel over two host devices.
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


def build(keras):
    from kerasswa import SWA

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)]
    )
    optimizer = SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=3, average_period=2)
    model.compile(optimizer=optimizer, loss="mse")
    return model, optimizer


def custom_loop(tf, strategy, model, optimizer, dataset):
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


def train_and_save(keras, model, optimizer, fit_data, output, **fit_kwargs):
    model.fit(fit_data[0], fit_data[1], epochs=EPOCHS, shuffle=False, verbose=0, **fit_kwargs)
    save(keras, model, optimizer, output)


def save(keras, model, optimizer, output):
    import numpy as np

    optimizer.assign_average_vars(model.variables)
    np.savez(
        output,
        snapshot_count=optimizer.snapshot_count,
        iterations=int(keras.ops.convert_to_numpy(optimizer.iterations)),
        *model.get_weights(),
    )


def main(mode, output):
    x, y = data()
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
        with strategy.scope():
            model, optimizer = build(keras)
        if mode in ("single", "mirrored"):
            train_and_save(keras, model, optimizer, (dataset, None), output)
        else:
            custom_loop(tf, strategy, model, optimizer, dataset)
            save(keras, model, optimizer, output)
    elif mode in ("jax_single", "jax_data_parallel"):
        os.environ["KERAS_BACKEND"] = "jax"
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax
        import keras

        assert len(jax.devices()) == 2, jax.devices()
        if mode == "jax_data_parallel":
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=jax.devices())
            )
        model, optimizer = build(keras)
        train_and_save(keras, model, optimizer, (x, y), output, batch_size=GLOBAL_BATCH)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
