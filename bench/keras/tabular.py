"""Keras training throughput of Gantry's `tabular` architecture, for bench/tabular-train.

The same layers as training/architectures.ts's `tabular` (dense(relu) [→ batch norm] → dropout × N,
then softmax or a linear dense(1)), Adam, categorical cross-entropy or mean squared error, on random
encoded records of the given width. Argument: a JSON list of cases ({name, featureSize, task,
numClasses, hiddenUnits, dropout, batchNorm}), then batch, max steps and the time budget. Prints one
JSON object per case on stdout. A case with `inputs` ({numeric, vocabularies, embedding, hidden}) is instead the
functional model of bench/tabular-train.ts's multiInput: numeric → Dense(relu), each index input → Embedding →
Flatten, Concatenate → softmax.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cases = json.loads(sys.argv[1])
batch, max_steps, budget = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
layers = tf.keras.layers
rng = np.random.default_rng(0)


def multi_input(case):
    spec = case["inputs"]
    numeric = layers.Input((spec["numeric"],), name="numeric")
    indices = [layers.Input((1,), name=f"category{i}", dtype="int32") for i in range(len(spec["vocabularies"]))]
    parts = [layers.Dense(spec["hidden"], activation="relu")(numeric)]
    for size, index in zip(spec["vocabularies"], indices):
        parts.append(layers.Flatten()(layers.Embedding(size, spec["embedding"])(index)))
    output = layers.Dense(case["numClasses"], activation="softmax")(layers.Concatenate()(parts))
    model = tf.keras.Model([numeric, *indices], output)
    x = [rng.normal(size=(batch, spec["numeric"])).astype("float32")] + [
        rng.integers(0, size, (batch, 1)).astype("int32") for size in spec["vocabularies"]
    ]
    return model, x


def sequential(case):
    stack = [layers.Input((case["featureSize"],))]
    for units in case["hiddenUnits"]:
        stack.append(layers.Dense(units, activation="relu"))
        if case["batchNorm"]:
            stack.append(layers.BatchNormalization())
        if case["dropout"] > 0:
            stack.append(layers.Dropout(case["dropout"]))
    regression = case["task"] == "regression"
    stack.append(layers.Dense(1) if regression else layers.Dense(case["numClasses"], activation="softmax"))
    return tf.keras.Sequential(stack), rng.normal(size=(batch, case["featureSize"])).astype("float32")


for case in cases:
    regression = case["task"] == "regression"
    model, x = multi_input(case) if case.get("inputs") else sequential(case)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse" if regression else "categorical_crossentropy")
    if regression:
        y = rng.normal(20, 5, (batch, 1)).astype("float32")
    else:
        y = tf.keras.utils.to_categorical(rng.integers(0, case["numClasses"], batch), case["numClasses"])
    model.train_on_batch(x, y)  # warm-up: tracing and allocation
    steps, started = 0, time.perf_counter()
    while steps < max_steps and (steps < 2 or time.perf_counter() - started < budget):
        model.train_on_batch(x, y)
        steps += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"name": case["name"], "steps": steps, "samplesPerSecond": steps * batch / seconds}), flush=True)
