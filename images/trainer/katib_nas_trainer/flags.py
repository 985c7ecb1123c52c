"""The trainer's flags: one table, read by the argument parser and checked against the generator's
trainer contract (generator/trainer_contract.py) by a test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    kind: str  # "int", "float" or "choice"
    default: object
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


# Search-space flags: every parameter a values file may tune.
SEARCH_FLAGS: dict[str, Spec] = {
    "lr": Spec("float", 0.003, 0.0, 10.0, low_open=True, help="learning rate"),
    "weight-decay": Spec("float", 0.0, 0.0, 1.0, help="L2 weight decay"),
    "momentum": Spec("float", 0.9, 0.0, 1.0, help="SGD/RMSprop momentum"),
    "batch-size": Spec("int", 64, 1, 65536, help="samples per step"),
    "optimizer": Spec("choice", "adam", choices=("adam", "adamw", "sgd", "rmsprop")),
    "epochs": Spec("int", 20, 1, 10000, help="epochs to train"),
    "arch": Spec("choice", "mlp", choices=("mlp", "cnn"), help="model family"),
    "num-layers": Spec("int", 2, 1, 16, help="hidden layers of the MLP"),
    "units": Spec("int", 128, 1, 8192, help="units per hidden layer"),
    "activation": Spec("choice", "relu", choices=("relu", "gelu", "tanh", "silu")),
    "dropout": Spec("float", 0.1, 0.0, 0.95, help="dropout probability"),
    "conv-blocks": Spec("int", 2, 1, 4, help="conv blocks of the CNN"),
    "channels": Spec("int", 32, 1, 512, help="channels of the first conv block (doubling per block)"),
    "kernel-size": Spec("choice", "3", choices=("3", "5", "7")),
    "pooling": Spec("choice", "max", choices=("max", "avg", "none")),
    "patience": Spec("int", 5, 1, 10000, help="epochs without improvement before stopping early"),
    "augment": Spec("choice", "none", choices=("none", "shift"), help="random 1-pixel shifts of image samples"),
}

# Metrics printed each epoch as `name=value` (Katib's StdOut collector format).
METRICS = ("epoch", "accuracy", "loss", "train_accuracy", "train_loss")
