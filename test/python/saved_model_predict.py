"""Loads SavedModels as Python TensorFlow and TensorFlow Serving do, and prints what they answer.

Reads a JSON list of jobs from the file named by argv[1], each {"dir", "inputs": {key: {"shape", "data"}}} and
optionally raw "records" to encode by the SavedModel's assets.extra/preprocessing.json and feed as "recordsInput",
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


def encode(preprocessing, record):
    """A raw record as the model's input vector, by the version's assets.extra/preprocessing.json (README's recipe)."""
    out = []
    for column in preprocessing["columns"]:
        value = record.get(column["name"])
        if value is None or (isinstance(value, str) and value.strip() == ""):
            value = column["fill"]  # what `impute` does; a `drop` or `fail` column needs a value
        if column["kind"] == "numeric":
            out.append((float(value) - column["mean"]) / column["std"])
        elif column["kind"] == "boolean":
            out.append(1.0 if str(value).strip().lower() in ("true", "1", "yes", "y", "t") else 0.0)
        else:
            vocabulary = column["vocabulary"]
            one_hot = [0.0] * (len(vocabulary) + 1)  # the last slot: out of vocabulary
            one_hot[vocabulary.index(value) if value in vocabulary else len(vocabulary)] = 1.0
            out.extend(one_hot)
    return out


def run(job):
    feeds = {k: np.asarray(v["data"], np.float32).reshape(v["shape"]) for k, v in job["inputs"].items()}
    loaded = tf.saved_model.load(job["dir"])
    signature = loaded.signatures["serving_default"]
    _, specs = signature.structured_input_signature
    outputs = signature(**{k: tf.constant(v) for k, v in feeds.items()})
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], job["dir"])
        sig = meta.signature_def["serving_default"]
        fetched = session.run(
            {k: t.name for k, t in sig.outputs.items()}, {sig.inputs[k].name: v for k, v in feeds.items()}
        )
    from_records = {}
    if "records" in job:
        with open(f'{job["dir"]}/assets.extra/preprocessing.json') as f:
            preprocessing = json.load(f)
        rows = tf.constant([encode(preprocessing, r) for r in job["records"]], tf.float32)
        from_records = {k: t.numpy().ravel().tolist() for k, t in signature(**{job["recordsInput"]: rows}).items()}
    return {
        "method": sig.method_name,
        "recordValues": from_records,
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
