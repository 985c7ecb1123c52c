"""`--optimizer` means the same training in both trainers: each trainer's optimizer, built from the same
flags, takes the same steps from the same weights and gradients, including gradients near epsilon
(where Keras's own Adam and RMSprop differ from PyTorch's) and a learning-rate change mid-way (where
Keras's own SGD and RMSprop momentum differ). Each framework runs in its own process, as the trainers
do (TensorFlow and PyTorch load clashing LLVM builds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from katib_nas_contract.flags import SEARCH_FLAGS

CASES = {
    "adam": {"optimizer": "adam", "weight-decay": 0.01},
    "adamw": {"optimizer": "adamw", "weight-decay": 0.01},
    "rmsprop": {"optimizer": "rmsprop", "momentum": 0.0, "weight-decay": 0.0},
    "rmsprop-momentum": {"optimizer": "rmsprop", "momentum": 0.9, "weight-decay": 0.01},
    "sgd": {"optimizer": "sgd", "momentum": 0.0, "weight-decay": 0.01},
    "sgd-nesterov": {"optimizer": "sgd", "momentum": 0.9, "weight-decay": 0.01},
}
STEPS = 20
# One coordinate per gradient scale, from ordinary to below Adam's epsilon of 1e-8.
SCALES = np.array([1.0, 1e-1, 1e-3, 1e-5, 1e-6, 1e-7, 1e-8, 3e-9], dtype=np.float32)

# argv: cases JSON, inputs .npz (w0, grads, lrs), output .npz; writes each case's weights after every step.
SCRIPTS = {
    "pytorch": """
import json, sys, numpy as np, torch
from katib_nas_trainer.model import build_model, build_optimizer
cases, inputs = json.loads(sys.argv[1]), np.load(sys.argv[2])
out = {}
for name, params in cases.items():
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.from_numpy(inputs["w0"].copy()))
    optimizer = build_optimizer(params, module)
    path = []
    for grad, lr in zip(inputs["grads"], inputs["lrs"]):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        module.w.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        path.append(module.w.detach().numpy().copy())
    out[name] = np.stack(path)
np.savez(sys.argv[3], **out)
""",
    "keras": """
import json, sys, numpy as np, keras, tensorflow as tf
from katib_nas_keras.model import build_optimizer
cases, inputs = json.loads(sys.argv[1]), np.load(sys.argv[2])
out = {}
for name, params in cases.items():
    w = keras.Variable(inputs["w0"])
    optimizer = build_optimizer(params)
    optimizer.build([w])
    path = []
    for grad, lr in zip(inputs["grads"], inputs["lrs"]):
        optimizer.learning_rate = float(lr)
        optimizer.apply_gradients([(tf.constant(grad), w)])
        path.append(np.array(w))
    out[name] = np.stack(path)
np.savez(sys.argv[3], **out)
""",
}


def trajectories(
    framework: str, cases: dict[str, dict[str, object]], inputs: Path, work: Path
) -> dict[str, np.ndarray]:
    out = work / f"{framework}.npz"
    env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPTS[framework], json.dumps(cases), str(inputs), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    work = tmp_path_factory.mktemp("optimizers")
    rng = np.random.default_rng(0)
    defaults = {name: spec.default for name, spec in SEARCH_FLAGS.items()}
    cases = {name: defaults | {"lr": 0.01} | case for name, case in CASES.items()}
    inputs = work / "inputs.npz"
    np.savez(
        inputs,
        w0=rng.standard_normal(len(SCALES)).astype(np.float32),
        grads=(rng.standard_normal((STEPS, len(SCALES))) * SCALES).astype(np.float32),
        lrs=np.where(np.arange(STEPS) < STEPS // 2, 0.01, 0.004).astype(np.float32),  # a scheduled change
    )
    return {framework: trajectories(framework, cases, inputs, work) for framework in SCRIPTS}


@pytest.mark.parametrize("case", sorted(CASES))
def test_keras_optimizer_takes_pytorchs_steps(both: dict[str, dict[str, np.ndarray]], case: str) -> None:
    torch_path, keras_path = both["pytorch"][case], both["keras"][case]
    # The weights really move (lr 0.01): an optimizer that did nothing would not match.
    assert np.abs(np.diff(torch_path, axis=0)).max() > 1e-3
    # float32 rounding of weights near 1 is ~1e-7; the semantic differences this guards against are
    # ~1e-3 here (a step of lr 0.01 scaled differently).
    np.testing.assert_allclose(keras_path, torch_path, rtol=0, atol=2e-6)
