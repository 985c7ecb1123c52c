"""The trainers' flags and metrics: one table, read by every trainer's argument parser and by the
generator's checks of a values file against the trainer it runs."""

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


@dataclass(frozen=True)
class Trainer:
    """One implementation of the contract: its image, its command and what it accepts and prints."""

    framework: str
    repository: str  # default image repository in the chart
    command: tuple[str, ...]
    flags: dict[str, Spec]
    metrics: tuple[str, ...]


# Both trainers take the same flags (MLP and CNN built from the same parameters) and print the same
# metrics, so a values file switches framework without changing its search space.
TRAINERS: dict[str, Trainer] = {
    "pytorch": Trainer(
        "pytorch", "ghcr.io/katib-nas/trainer", ("python", "-m", "katib_nas_trainer"), SEARCH_FLAGS, METRICS
    ),
    "keras": Trainer(
        "keras", "ghcr.io/katib-nas/trainer-keras", ("python", "-m", "katib_nas_keras"), SEARCH_FLAGS, METRICS
    ),
}


def trainer_for_image(repository: str) -> Trainer | None:
    """The katib-nas trainer an image repository holds (any registry or mirror), or None for a user's own."""
    for trainer in TRAINERS.values():
        if repository == trainer.repository or repository.endswith("/" + trainer.repository.split("/", 1)[1]):
            return trainer
    return None
