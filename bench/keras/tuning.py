"""Optuna driving Keras on the same tensorflow-cpu wheel as the native tfjs backend: the peer of bench/tuning.ts.

The same search as the bench's ASHA row: random sampling over the same space, Optuna's SuccessiveHalvingPruner
(asynchronous successive halving, min resource 1, reduction factor 3) on validation accuracy after each epoch,
trials run one at a time until the same budget of epochs is spent. The data is the bench's slice, handed over as
raw uint8 files. Argument: a JSON object {dir, train, validation, epochs, budget, seed, space}. Prints one JSON
object: each epoch trained in order as [elapsed seconds, trial, epoch, val accuracy], and the trial count.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import tensorflow as tf  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
args = json.loads(sys.argv[1])
n_train, n_val = args["train"], args["validation"]
raw = np.fromfile(os.path.join(args["dir"], "images.u8"), dtype=np.uint8).reshape(-1, 28, 28, 1)
labels = np.fromfile(os.path.join(args["dir"], "labels.u8"), dtype=np.uint8)
x_train, y_train = raw[:n_train].astype("float32"), labels[:n_train]
x_val, y_val = raw[n_train : n_train + n_val].astype("float32"), labels[n_train : n_train + n_val]
space = args["space"]
max_epochs, budget = args["epochs"], args["budget"]
started = time.perf_counter()
epochs_log = []


def objective(trial):
    lr = trial.suggest_float("lr", *space["lr"], log=True)
    dropout = trial.suggest_float("dropout", *space["dropout"])
    hidden = json.loads(trial.suggest_categorical("hidden", [json.dumps(h) for h in space["hidden"]]))
    batch = trial.suggest_categorical("batch", space["batch"])
    layers = [tf.keras.Input((28, 28, 1)), tf.keras.layers.Rescaling(1 / 255), tf.keras.layers.Flatten()]
    for units in hidden:
        layers += [tf.keras.layers.Dense(units, activation="relu"), tf.keras.layers.Dropout(dropout)]
    model = tf.keras.Sequential(layers + [tf.keras.layers.Dense(10, activation="softmax")])
    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = 0.0
    for epoch in range(max_epochs):
        if len(epochs_log) >= budget:
            break
        history = model.fit(
            x_train, y_train, batch_size=batch, epochs=epoch + 1, initial_epoch=epoch,
            validation_data=(x_val, y_val), verbose=0,
        )
        accuracy = float(history.history["val_accuracy"][-1])
        epochs_log.append([time.perf_counter() - started, trial.number + 1, epoch + 1, accuracy])
        trial.report(accuracy, epoch + 1)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return accuracy


study = optuna.create_study(
    direction="maximize",
    sampler=optuna.samplers.RandomSampler(seed=args["seed"]),
    pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
)
while len(epochs_log) < budget:
    study.optimize(objective, n_trials=1)
print(json.dumps({"epochs": epochs_log, "trials": len(study.trials), "optuna": optuna.__version__}))
