"""Keras optimizers that take PyTorch's steps, so `--optimizer` means the same training in both trainers.

Keras's own differ where it shows: its Adam adds epsilon to the un-corrected sqrt(v) (the paper's
"epsilon hat"), which early in training damps the step of every weight whose gradient is near
epsilon (a 2 x 256 digits MLP without dropout, started from PyTorch's weights, was 1.4e-3 away from
PyTorch's after one AdamW step at lr 0.002; 1.9e-4 with these classes, float32 rounding of near-zero
gradients that Adam scales up); its RMSprop adds epsilon inside the square root (a floor of 1e-4 rather
than 1e-8); its SGD and RMSprop keep the learning rate inside the momentum buffer, so a scheduled
rate change reaches the step a different way. Each class here keeps Keras's variables (so
checkpoints and `apply_gradients` work as before) and replaces only the update, with the update
rules as PyTorch documents them for torch.optim.Adam, RMSprop and SGD, including their coupled
weight decay (`l2`: l2 * w added to the gradient first). Decoupled weight decay (AdamW) is Keras's
base optimizer's `weight_decay`, which shrinks each weight by lr * decay before the update, as
torch.optim.AdamW does."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _coupled(optimizer: Any, gradient: Any, variable: Any) -> Any:
    """The gradient with PyTorch's coupled weight decay (the optimizers' `weight_decay` argument) added."""
    gradient = ops.cast(gradient, variable.dtype)
    return ops.add(gradient, ops.multiply(optimizer.l2, variable)) if optimizer.l2 else gradient


class TorchAdam(keras.optimizers.Adam):  # type: ignore[misc]  # keras ships no type information
    """theta -= lr * m_hat / (sqrt(v_hat) + eps), with bias-corrected moments."""

    def __init__(self, *, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = _coupled(self, gradient, variable)
        step = ops.cast(self.iterations + 1, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step))
        v_hat = ops.divide(v, 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, m_hat), ops.add(ops.sqrt(v_hat), self.epsilon)))


class TorchRMSprop(keras.optimizers.RMSprop):  # type: ignore[misc]
    """v = rho v + (1 - rho) g^2; with momentum b = mu b + g / (sqrt(v) + eps), theta -= lr b."""

    def __init__(self, *, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = _coupled(self, gradient, variable)
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(v, ops.add(ops.multiply(self.rho, v), ops.multiply(1 - self.rho, ops.square(gradient))))
        direction = ops.divide(gradient, ops.add(ops.sqrt(v), self.epsilon))
        if self.momentum > 0:
            buffer = self._momentums[self._get_variable_index(variable)]
            self.assign(buffer, ops.add(ops.multiply(self.momentum, buffer), direction))
            direction = buffer
        self.assign_sub(variable, ops.multiply(lr, direction))


class TorchSGD(keras.optimizers.SGD):  # type: ignore[misc]
    """b = mu b + g (b = g on the first step, as b starts at 0); Nesterov steps along g + mu b."""

    def __init__(self, *, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = _coupled(self, gradient, variable)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, gradient))
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, ops.add(ops.multiply(momentum, buffer), gradient))
        direction = ops.add(gradient, ops.multiply(momentum, buffer)) if self.nesterov else buffer
        self.assign_sub(variable, ops.multiply(lr, direction))
