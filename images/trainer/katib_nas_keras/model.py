"""Architectures built from a trial's parameters, the same families as the PyTorch trainer: an MLP and
a small CNN. Samples arrive as (C, H, W) like the PyTorch trainer's and the served ONNX model's; the
CNN permutes them to channels-last once, for TensorFlow's CPU convolutions."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from .optimizers import TorchAdam, TorchRMSprop, TorchSGD

# PyTorch's BatchNorm defaults (momentum 0.1 of the new statistic, eps 1e-5).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="katib_nas")
class Standardize(keras.layers.Layer):  # type: ignore[misc]  # keras ships no type information
    """Input scaling inside the model, so the exported ONNX takes raw samples and the server needs no
    preprocessing of its own: x * scale + shift, with constants fixed from the training data."""

    def __init__(self, scale: Any, shift: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale_init = np.asarray(scale, dtype=np.float32)
        self.shift_init = np.asarray(shift, dtype=np.float32)

    def build(self, input_shape: Any) -> None:
        self.scale = self.add_weight(
            shape=self.scale_init.shape, initializer=keras.initializers.Constant(self.scale_init), trainable=False
        )
        self.shift = self.add_weight(
            shape=self.shift_init.shape, initializer=keras.initializers.Constant(self.shift_init), trainable=False
        )

    def call(self, x: Any) -> Any:
        return x * self.scale + self.shift

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale_init.tolist(), "shift": self.shift_init.tolist()}


def standardizer(params: dict[str, Any], x_train: np.ndarray) -> Standardize:
    """Per-feature statistics for the MLP; one global mean/std for the CNN (keeps it shift-invariant).
    Constant features (digit corners are always 0) keep a std of 1. The same rule as the PyTorch trainer."""
    if params["arch"] == "cnn":
        mean, std = x_train.mean().reshape(1), x_train.std(ddof=1).reshape(1)
    else:
        mean, std = x_train.mean(0), x_train.std(0, ddof=1)
    std = np.where(std > 1e-3, std, 1.0)
    return Standardize(1.0 / std, -mean / std, name="standardize")


def _torch_init(fan_in: int) -> tuple[keras.initializers.Initializer, keras.initializers.Initializer]:
    """PyTorch's default Linear/Conv initialisation (uniform in +-1/sqrt(fan_in) for weights and biases),
    so both trainers start from the same distribution and land on comparable accuracy."""
    bound = 1.0 / math.sqrt(fan_in)
    weights = keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")
    return weights, keras.initializers.RandomUniform(-bound, bound)


def _dense(fan_in: int, units: int) -> keras.layers.Dense:
    kernel, bias = _torch_init(fan_in)
    return keras.layers.Dense(units, kernel_initializer=kernel, bias_initializer=bias)


def build_model(
    params: dict[str, Any], shape: tuple[int, int, int], classes: int, x_train: np.ndarray | None = None
) -> keras.Model:
    activation = params["activation"]
    dropout = float(params["dropout"])
    units = int(params["units"])
    inputs = keras.Input(shape)
    x = standardizer(params, x_train)(inputs) if x_train is not None else inputs
    if params["arch"] == "cnn":
        channels, height, width = shape
        kernel = int(params["kernel-size"])
        x = keras.layers.Permute((2, 3, 1))(x)  # (C, H, W) -> (H, W, C)
        for block in range(int(params["conv-blocks"])):
            out = int(params["channels"]) * 2**block
            k_init, b_init = _torch_init(channels * kernel * kernel)
            x = keras.layers.Conv2D(out, kernel, padding="same", kernel_initializer=k_init, bias_initializer=b_init)(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)(x)
            x = keras.layers.Activation(activation)(x)
            if params["pooling"] != "none" and (height >= 2 or width >= 2):
                window = (min(2, height), min(2, width))
                pool = keras.layers.MaxPooling2D if params["pooling"] == "max" else keras.layers.AveragePooling2D
                x = pool(window)(x)
                height, width = height // window[0], width // window[1]
            channels = out
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dropout(dropout)(x)
        x = _dense(channels * height * width, units)(x)
        x = keras.layers.Activation(activation)(x)
        x = keras.layers.Dropout(dropout)(x)
        features = units
    else:
        features = shape[0] * shape[1] * shape[2]
        x = keras.layers.Flatten()(x)
        for _ in range(int(params["num-layers"])):
            x = _dense(features, units)(x)
            x = keras.layers.Activation(activation)(x)
            x = keras.layers.Dropout(dropout)(x)
            features = units
    outputs = _dense(features, classes)(x)
    return keras.Model(inputs, outputs)


def build_optimizer(params: dict[str, Any]) -> keras.optimizers.Optimizer:
    """The optimizer with PyTorch's update rules, defaults and weight decay (see optimizers.py): coupled
    L2 for Adam, SGD and RMSprop, decoupled for AdamW."""
    lr, decay, momentum = float(params["lr"]), float(params["weight-decay"]), float(params["momentum"])
    name = params["optimizer"]
    if name == "adamw":
        return TorchAdam(learning_rate=lr, weight_decay=decay, epsilon=1e-8)
    if name == "adam":
        return TorchAdam(learning_rate=lr, epsilon=1e-8, l2=decay)
    if name == "rmsprop":
        return TorchRMSprop(learning_rate=lr, rho=0.99, momentum=momentum, epsilon=1e-8, l2=decay)
    return TorchSGD(learning_rate=lr, momentum=momentum, nesterov=momentum > 0, l2=decay)
