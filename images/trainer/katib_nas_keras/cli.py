"""Command line of the Keras trial program: the contract's flags (katib_nas_contract.args), parsed the
same way as the PyTorch trainer's; a bad flag or missing data is one clear line on stderr and exit 2."""

from __future__ import annotations

import os

from katib_nas_contract import trainer_cli
from katib_nas_contract.datasets import Arrays
from katib_nas_contract.trial import Run, Trainer

PROG = "katib-nas-keras"


def configure(threads: int, device: str, seed: int, gpu_memory_mib: int | None = None) -> str:
    """Threads, device, the GPU memory cap and determinism: all must be set before TensorFlow starts its
    runtime. Returns the device used, or raises ValueError for a device that is not there."""
    # TensorFlow's C++ start-up notices would drown the metric lines in the trial log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cuda" and not gpus:
        raise ValueError("--device cuda: TensorFlow sees no GPU; use --device cpu or auto")
    if device == "cpu" or not gpus:
        tf.config.set_visible_devices([], "GPU")
    else:
        for gpu in gpus:
            # TensorFlow takes nearly all of a card at start-up by default, which would leave nothing
            # to the other trials time-slicing it: a budget caps it, else it grows as needed.
            if gpu_memory_mib is not None:
                # memory_limit is "MB" in the docs; gpu_device.cc multiplies it by 1 << 20 (MiB).
                limit = [tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory_mib)]
                tf.config.set_logical_device_configuration(gpu, limit)
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return "cuda" if gpus and device != "cpu" else "cpu"


def make_trainer(run: Run, data: Arrays, device: str) -> Trainer:
    from .train import KerasTrainer  # imports TensorFlow, after configure()

    return KerasTrainer(run, data, device)


def out_of_memory() -> tuple[type[BaseException], ...]:
    import tensorflow as tf

    return (tf.errors.ResourceExhaustedError,)


FRAMEWORK = trainer_cli.Framework(PROG, __doc__, configure, make_trainer, out_of_memory)


def main(argv: list[str] | None = None) -> int:
    return trainer_cli.main(FRAMEWORK, argv)
