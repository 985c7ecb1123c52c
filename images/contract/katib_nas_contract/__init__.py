"""The katib-nas trial contract: what every trainer writes and every reader of trial records relies on.

- `record`: the trial record's layout and file names, and the trial-record writer
- `files`: atomic writes and tolerant reads
- `best`: which trial is best (within the serving budget, if one is set), and the `best.json` pointer
- `serving_cost`: what an exported model costs to serve (measured at export), and the budget type
- `flags`: the trainer flags and metric names, one table per trainer framework
- `args`: the trainer command line built from that table
- `trial`: one trial's loop and rules, with the hooks each framework's trainer fills in
- `trainer_cli`: the trial program's command line around that loop
- `stopping`: the cross-trial early-stopping rules trainers apply to themselves
- `katib_status`: a trial those rules stop is marked EarlyStopped in Katib, as Katib's own early stopping does
- `datasets`: the data sets and their fixed splits

Standard library and NumPy only, so the server image (no training framework) and the generator
import it, and both trainer images copy it whole; only the serving-cost measurement, which the trainers
run, imports onnxruntime and onnx, when it runs. Nothing is imported here.
"""

from __future__ import annotations
