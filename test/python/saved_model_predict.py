"""Loads SavedModels as Python TensorFlow and TensorFlow Serving do, and prints what they answer.

Reads a JSON list of jobs from the file named by argv[1], each {"dir", "inputs": {key: {"shape", "data"}}},
and prints one JSON list: per job, the `serving_default` signature's input and output names, dtypes
and shapes, and its outputs on the inputs, computed twice: through tf.saved_model.load (TF2) and
through a TF1 session over the `serve` tag fed by the SignatureDef's tensor names (TF Serving's way).
"""
import json
import sys

import numpy as np
import tensorflow as tf


def dims(shape):
    return [-1 if d is None else int(d) for d in shape.as_list()]


def run(job):
    feeds = {k: np.asarray(v["data"], np.float32).reshape(v["shape"]) for k, v in job["inputs"].items()}
    signature = tf.saved_model.load(job["dir"]).signatures["serving_default"]
    _, specs = signature.structured_input_signature
    outputs = signature(**{k: tf.constant(v) for k, v in feeds.items()})
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], job["dir"])
        sig = meta.signature_def["serving_default"]
        fetched = session.run(
            {k: t.name for k, t in sig.outputs.items()}, {sig.inputs[k].name: v for k, v in feeds.items()}
        )
    return {
        "method": sig.method_name,
        "inputs": {k: {"dtype": s.dtype.name, "shape": dims(s.shape)} for k, s in specs.items()},
        "outputs": {
            k: {"dtype": t.dtype.name, "shape": dims(t.shape)} for k, t in signature.structured_outputs.items()
        },
        "values": {k: t.numpy().ravel().tolist() for k, t in outputs.items()},
        "sessionValues": {k: np.asarray(v).ravel().tolist() for k, v in fetched.items()},
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    print(json.dumps([run(job) for job in jobs]))
