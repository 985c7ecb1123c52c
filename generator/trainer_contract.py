"""What the katib-nas trainer image (images/trainer) accepts and prints.

The validator applies these rules only when `trial.image.repository` is the katib-nas trainer;
a user's own image may take other flags and print other metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

TRAINER_REPOSITORY_SUFFIX = "katib-nas/trainer"

# Metrics the trainer prints every epoch as `name=value` (Katib StdOut format).
TRAINER_METRICS = ("epoch", "accuracy", "loss", "train_accuracy", "train_loss")


@dataclass(frozen=True)
class Flag:
    kind: str  # "int", "float" or "choice"
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    low_open: bool = False  # True: the bound itself is not allowed
    choices: tuple[str, ...] = ()


# Trainer flags a search-space parameter may drive, named after the Katib parameters.
TRAINER_FLAGS: dict[str, Flag] = {
    "lr": Flag("float", 0.0, 10.0, low_open=True),
    "weight-decay": Flag("float", 0.0, 1.0),
    "momentum": Flag("float", 0.0, 1.0),
    "batch-size": Flag("int", 1, 65536),
    "optimizer": Flag("choice", choices=("adam", "adamw", "sgd", "rmsprop")),
    "epochs": Flag("int", 1, 10000),
    "arch": Flag("choice", choices=("mlp", "cnn")),
    "num-layers": Flag("int", 1, 16),
    "units": Flag("int", 1, 8192),
    "activation": Flag("choice", choices=("relu", "gelu", "tanh", "silu")),
    "dropout": Flag("float", 0.0, 0.95),
    "conv-blocks": Flag("int", 1, 4),
    "channels": Flag("int", 1, 512),
    "kernel-size": Flag("choice", choices=("3", "5", "7")),
    "pooling": Flag("choice", choices=("max", "avg", "none")),
    "patience": Flag("int", 1, 10000),
    "augment": Flag("choice", choices=("none", "shift")),
}
