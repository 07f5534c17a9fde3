"""Keras training throughput of Gantry's fashion-mnist architectures, for bench/train-throughput.

The same layers as training/architectures.ts (raw 0..255 input rescaled in the graph, the same
default widths, dropout and batch normalisation; `cnn-plain` is the cnn without it), Adam,
categorical cross-entropy, the given batch size, TensorFlow's default thread pools (as tfjs-node
uses). Prints one JSON object per model on stdout: samples/s and the
process's CPU time per step.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

batch, max_steps, budget = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
layers = tf.keras.layers


def mlp():
    return tf.keras.Sequential([
        layers.Input((28, 28, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
        layers.Dense(256, activation="relu"), layers.Dropout(0.2),
        layers.Dense(128, activation="relu"), layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])


def cnn_plain():
    return tf.keras.Sequential([
        layers.Input((28, 28, 1)), layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.25),
        layers.Dense(10, activation="softmax"),
    ])


def normalised(layer):
    """The layer without bias or activation, then batch normalisation (tfjs's and Keras's defaults) and ReLU."""
    return [layer, layers.BatchNormalization(momentum=0.99, epsilon=1e-3), layers.Activation("relu")]


def cnn():
    """Gantry's default cnn: batch normalisation after each convolution and the dense layer."""
    return tf.keras.Sequential([
        layers.Input((28, 28, 1)), layers.Rescaling(1 / 255),
        *normalised(layers.Conv2D(32, 3, padding="same", use_bias=False)), layers.MaxPooling2D(2),
        *normalised(layers.Conv2D(64, 3, padding="same", use_bias=False)), layers.MaxPooling2D(2),
        layers.Flatten(), *normalised(layers.Dense(128, use_bias=False)), layers.Dropout(0.25),
        layers.Dense(10, activation="softmax"),
    ])


rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (batch, 28, 28, 1)).astype("float32")
y = tf.keras.utils.to_categorical(rng.integers(0, 10, batch), 10)
for name, build in (("mlp", mlp), ("cnn-plain", cnn_plain), ("cnn", cnn)):
    model = build()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.train_on_batch(x, y)  # warm-up: tracing and allocation
    steps, started, cpu = 0, time.perf_counter(), time.process_time()
    while steps < max_steps and (steps < 2 or time.perf_counter() - started < budget):
        model.train_on_batch(x, y)
        steps += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({
        "model": name, "steps": steps, "samplesPerSecond": steps * batch / seconds,
        "cpuMsPerStep": cpu * 1000 / steps,
    }), flush=True)
