"""Models from elsewhere for test/models-import.test.ts, written by Python TensorFlow as a user would write them.

usage: import-models.py OUT_DIR TEST_IMAGES_SHARD TEST_LABELS_SHARD [TEST_IMAGES_SHARD TEST_LABELS_SHARD ...]

Writes OUT_DIR/keras (a small Fashion-MNIST classifier trained for a few seconds on a slice of the training
set, exported with Keras's model.export()) and OUT_DIR/unfit (a tf.saved_model.save'd module whose signature takes
5 floats, which fits no image dataset), then prints, as JSON, the Keras model's accuracy and mean cross-entropy on the
given test shards (Gantry's raw shard bytes: uint8 pixels, one uint8 label each), computed by calling the exported
SavedModel's serving_default signature, as Gantry's evaluation does.
"""

import gzip
import json
import os
import sys

import numpy as np
import tensorflow as tf

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(name, offset):
    with gzip.open(os.path.join(FASHION, name)) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def main():
    out, shards = sys.argv[1], sys.argv[2:]
    tf.keras.utils.set_random_seed(7)
    images = read_idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)[:4000].astype("float32")
    labels = read_idx("train-labels-idx1-ubyte.gz", 8)[:4000]
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(28, 28, 1)),
            # Raw pixels in, as Gantry feeds its image models.
            tf.keras.layers.Rescaling(1 / 255),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    model.export(os.path.join(out, "keras"))

    class Unfit(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.reduce_sum(x, axis=1, keepdims=True) * 2.0 + 1.0}

    unfit = Unfit()
    tf.saved_model.save(unfit, os.path.join(out, "unfit"), signatures={"serving_default": unfit.serve})

    xs = np.concatenate([np.fromfile(p, dtype=np.uint8) for p in shards[0::2]]).reshape(-1, 28, 28, 1)
    ys = np.concatenate([np.fromfile(p, dtype=np.uint8) for p in shards[1::2]])
    serve = tf.saved_model.load(os.path.join(out, "keras")).signatures["serving_default"]
    batches = [xs[i : i + 1000].astype("float32") for i in range(0, len(xs), 1000)]
    probabilities = np.concatenate([list(serve(tf.constant(b)).values())[0].numpy() for b in batches])
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == ys))
    clipped = np.clip(probabilities[np.arange(len(ys)), ys], 1e-7, 1 - 1e-7)
    print(json.dumps({"count": int(len(ys)), "accuracy": accuracy, "loss": float(-np.mean(np.log(clipped)))}))


main()
