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


def bare_cnn_plain_step(data_format):
    """cnn-plain's training step as one tf.function of tf.nn ops and TF1's Adam (ResourceApplyAdam), no Keras:
    the floor of what the kernels alone take. NCHW is the other layout TensorFlow's oneDNN convolutions take."""
    init = np.random.default_rng(1)
    shapes = [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (7 * 7 * 64, 128), (128,), (128, 10), (10,)]
    weights = [tf.Variable(init.normal(0, 0.05, s).astype("float32")) for s in shapes]
    optimizer = tf.compat.v1.train.AdamOptimizer(1e-3)
    nchw = data_format == "NCHW"

    def conv_block(h, kernel, bias):
        h = tf.nn.conv2d(h, kernel, 1, "SAME", data_format=data_format)
        h = tf.nn.relu(tf.nn.bias_add(h, bias, data_format=data_format))
        return tf.nn.max_pool2d(h, 2, 2, "VALID", data_format=data_format)

    @tf.function
    def step(images, labels):
        w1, b1, w2, b2, w3, b3, w4, b4 = weights
        with tf.GradientTape() as tape:
            h = images / 255.0
            if nchw:
                h = tf.transpose(h, [0, 3, 1, 2])
            h = conv_block(conv_block(h, w1, b1), w2, b2)
            if nchw:
                h = tf.transpose(h, [0, 2, 3, 1])
            h = tf.nn.dropout(tf.nn.relu(tf.reshape(h, [batch, -1]) @ w3 + b3), 0.25)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, h @ w4 + b4))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    return step


def measure(name, variant, train):
    train()  # warm-up: tracing and allocation
    steps, started, cpu = 0, time.perf_counter(), time.process_time()
    while steps < max_steps and (steps < 2 or time.perf_counter() - started < budget):
        train()
        steps += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({
        "model": name, "variant": variant, "steps": steps, "samplesPerSecond": steps * batch / seconds,
        "cpuMsPerStep": cpu * 1000 / steps,
    }), flush=True)


rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (batch, 28, 28, 1)).astype("float32")
y = tf.keras.utils.to_categorical(rng.integers(0, 10, batch), 10)
for name, build in (("mlp", mlp), ("cnn-plain", cnn_plain), ("cnn", cnn)):
    model = build()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    measure(name, None, lambda: model.train_on_batch(x, y))
# What else the same wheel offers for the plain CNN (bench/train-throughput.ts prints them apart): the kernels with
# nothing around them, the other layout, and bfloat16 (this CPU has AVX512_BF16).
xs, ys = tf.constant(x), tf.constant(y, tf.float32)
for data_format in ("NHWC", "NCHW"):
    bare = bare_cnn_plain_step(data_format)
    measure("cnn-plain", f"tf.function of tf.nn ops, no Keras, {data_format}", lambda: bare(xs, ys).numpy())
tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
model = cnn_plain()
model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
measure("cnn-plain", "Keras, mixed_bfloat16 policy", lambda: model.train_on_batch(x, y))
