"""The Python side of bench/serving-saved-model.ts: the Fashion-MNIST MLP (Flatten, Dense 128 relu,
Dense 10 softmax) built in Keras, exported with model.export() to OUT/saved/1, its weights written to
OUT/weights.json (so the bench builds the same model in tfjs), and the ceiling: the SavedModel's
serving_default signature called in process at batch 1, 16 and 64, on TensorFlow's thread settings of
the server (TF_NUM_INTRAOP_THREADS). Usage: saved_model_mlp.py OUT SECONDS. Prints one JSON line.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out, seconds = sys.argv[1], float(sys.argv[2])
threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

tf.keras.utils.set_random_seed(1)
model = tf.keras.Sequential(
    [
        tf.keras.Input(shape=(28, 28, 1), name="input"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ]
)
model.export(f"{out}/saved/1", verbose=False)
with open(f"{out}/weights.json", "w") as f:
    json.dump([w.tolist() for w in model.get_weights()], f)

fn = tf.saved_model.load(f"{out}/saved/1").signatures["serving_default"]
images = np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype(np.float32)
ceiling = {}
for batch in (1, 16, 64):
    x = tf.constant(images[:batch])
    for _ in range(100):
        fn(input=x)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn(input=x)["output_0"].numpy()
        times.append(time.perf_counter() - t0)
    times.sort()
    mean = sum(times) / len(times)
    ceiling[batch] = {"rowsPerSecond": batch / mean, "p50": times[len(times) // 2] * 1000}
print(json.dumps({"ceiling": ceiling, "threads": threads or "default"}))
