"""The katib-nas Keras trial program (TensorFlow backend): a second implementation of the trial
contract in katib_nas_contract, with the same flags, metric lines, record and early-stopping rules as
the PyTorch trainer. The entry point is `katib_nas_keras.cli:main`."""

from __future__ import annotations
