"""`katib-nas replay RECORD`: rerun a trial on this machine from its record alone and say whether the
metrics match.

The record holds everything the rerun needs: params.json (parameters, seed, epochs), provenance.json
(framework, data set and its digest, device and threads, the flags that shape training, versions)
and metrics.json (where it ended, and why). The same trainer runs with the same flags into a scratch
directory. On CPU with the same versions, CPU model and data, training is deterministic (both
trainers seed everything and turn on deterministic kernels), so the numbers must be bit-identical.
Anything else (other versions, another CPU model, a GPU) changes floating-point rounding, which
compounds over the epochs: then the metrics must agree within TOLERANCE, and the reasons are named.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katib_nas_contract import provenance
from katib_nas_contract.args import typed
from katib_nas_contract.datasets import IDX_SOURCES, DataError, load
from katib_nas_contract.flags import SEARCH_FLAGS, TRAINERS
from katib_nas_contract.record import COMPLETE, CURVE, DATASETS_DIR, METRICS, PARAMS, PROVENANCE
from katib_nas_contract.stopping import RULES

from .errors import GeneratorError
from .local.collector import parse_line
from .local.plan import FRAMEWORK_LIBRARY
from .local.space import as_flag

EXIT_MATCH, EXIT_MISMATCH = 0, 1
# Allowed difference when rounding differs (see the module docstring): accuracies absolute, losses
# relative. bench/bench_replay.py measures what rounding alone does on digits (the same trial on 1
# and 2 threads, which sum in different orders); README "Provenance and replay" gives the figures these are set from.
TOLERANCE = {"accuracy": 0.02, "test_accuracy": 0.02, "loss": 0.1, "test_loss": 0.1}
RELATIVE = ("loss", "test_loss")
EXACT = ("accuracy", "loss", "test_accuracy", "test_loss", "epochs_run", "best_epoch", "ended")
PEER_RULES = tuple(r for r in RULES if r != "none")  # rules that decide from other trials' curves


class ReplayError(GeneratorError, ValueError):
    """A record that cannot be replayed: missing, damaged, incomplete or from an older trainer."""


@dataclass(frozen=True)
class Record:
    root: Path
    params: dict[str, Any]
    seed: int
    epochs: int
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    provenance: dict[str, Any]

    @property
    def framework(self) -> str:
        return str(self.provenance["framework"])


def _json(root: Path, name: str, kind: type) -> Any:
    path = root / name
    if not path.is_file():
        raise ReplayError(f"{path}: missing; {_MISSING.get(name, 'the record is incomplete')}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReplayError(f"{path}: not readable JSON ({exc}); the record is damaged") from None
    if not isinstance(value, kind):
        raise ReplayError(
            f"{path}: a JSON {kind.__name__} expected, found {type(value).__name__}; the record is damaged"
        )
    return value


_MISSING = {
    PROVENANCE: "the record comes from a trainer that wrote no provenance; replay needs the framework, data set "
    "and settings it holds, so rerun the trial with this version",
    METRICS: "the record has no final metrics to compare with",
}


def _field(path: Path, doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ReplayError(f"{path}: {key}: missing or of the wrong type ({value!r}); the record is damaged")
    return value


def read_record(root: Path) -> Record:
    """The record at `root`, checked: every problem is one ReplayError line naming file and value."""
    if not root.is_dir():
        raise ReplayError(f"{root}: no such directory; name a trial record (<model root>/<experiment>/<trial>/)")
    if not (root / PARAMS).is_file():
        trials = sorted(p.parent.name for p in root.glob(f"*/{PARAMS}"))
        hint = f"it holds trials, such as {root / trials[0]}" if trials else "a trial record holds params.json"
        raise ReplayError(f"{root}: not a trial record ({hint})")
    if not (root / COMPLETE).is_file():
        raise ReplayError(f"{root}: the trial did not finish (no {COMPLETE}); only a complete record can be replayed")
    doc = _json(root, PARAMS, dict)
    where = root / PARAMS
    params = _field(where, doc, "params", dict)
    for name, value in params.items():
        if name not in SEARCH_FLAGS:
            raise ReplayError(f"{where}: params.{name}: not a trainer parameter; the record is damaged")
        try:
            typed(name, SEARCH_FLAGS[name])(as_flag(value))
        except Exception as exc:  # argparse.ArgumentTypeError: the trainer would refuse the flag
            raise ReplayError(f"{where}: params.{name}: {exc}; the record is damaged") from None
    seed, epochs = _field(where, doc, "seed", int), _field(where, doc, "epochs", int)
    metrics = _json(root, METRICS, dict)
    for key in EXACT:
        _field(root / METRICS, metrics, key, str if key == "ended" else (int, float))
    curve = _json(root, CURVE, list)
    prov = _json(root, PROVENANCE, dict)
    where = root / PROVENANCE
    if _field(where, prov, "framework", str) not in TRAINERS:
        raise ReplayError(f"{where}: framework: {prov['framework']!r} is none of {', '.join(TRAINERS)}")
    for key in ("versions", "dataset", "device", "flags"):
        _field(where, prov, key, dict)
    _field(where, prov, "seed", int)
    for key in ("source", "sha256"):
        _field(where, prov["dataset"], key, str)
    _field(where, prov["device"], "type", str)
    _field(where, prov["device"], "threads", int)
    return Record(root, params, seed, epochs, metrics, curve, prov)


def differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Why the replay cannot be bit-identical: empty when it must be."""
    reasons = [
        f"{n} {recorded['versions'].get(n, 'absent')} recorded, {here['versions'].get(n, 'absent')} here"
        for n in sorted(set(recorded["versions"]) | set(here["versions"]))
        if recorded["versions"].get(n) != here["versions"].get(n)
    ]
    then, now = recorded["device"], here["device"]
    if then["type"] != "cpu":
        reasons.append(f"trained on {then['type']} ({then.get('name')}), whose kernels do not round reproducibly")
    elif now["type"] != "cpu":
        reasons.append(f"replayed on {now['type']}")
    elif then.get("name") != now.get("name"):
        reasons.append(f"CPU {then.get('name')} recorded, {now.get('name')} here (math kernels are chosen per CPU)")
    return reasons


def trainer_argv(record: Record, output_dir: Path, source: str, data_dir: Path, device: str) -> list[str]:
    """The recorded trial's command line, into `output_dir`: parameters, seed, data, threads, device and
    flags as recorded; a stop by the peers' rule repeats at its epoch (the peers are not replayed)."""
    _, *module = TRAINERS[record.framework].command
    flags = {**record.provenance["flags"]}
    stopped_by = record.metrics.get("stopped_by")
    if stopped_by in PEER_RULES:
        flags |= {"early-stopping": stopped_by, "es-replay-epoch": record.metrics["epochs_run"]}
    else:
        flags["early-stopping"] = "none"
    argv = [sys.executable, *module]
    argv += [f"--{k}={as_flag(v)}" for k, v in {**record.params, **flags}.items()]
    argv += [
        f"--seed={record.seed}",
        f"--dataset={source}",
        f"--data-dir={data_dir}",
        f"--threads={record.provenance['device']['threads']}",
        f"--device={device}",
        f"--output-dir={output_dir}",
        f"--experiment={record.root.parent.name or 'replay'}",
        f"--trial-name={record.root.name}",
    ]
    return argv


def _data(record: Record, scratch: Path) -> tuple[str, Path]:
    """The data set's source as the trainer takes it here, and its download cache: a file data set is
    found relative to the record's model root, as the trainer found it; a cache copied beside the
    records is used."""
    source = str(record.provenance["dataset"]["source"])
    model_root = record.root.parent.parent
    if source != "digits" and source not in IDX_SOURCES:
        path = Path(source)
        source = str(path if path.is_absolute() else (model_root / path).resolve())
    cache = model_root / DATASETS_DIR
    return source, cache if cache.is_dir() else scratch / DATASETS_DIR


def _compare(record: Record, replayed: dict[str, Any], curve: list[dict[str, Any]], exact: bool) -> list[str]:
    """What differs: for an exact replay every epoch and final figure, else the metrics beyond TOLERANCE."""
    if exact:
        for point, again in zip(record.curve, curve, strict=False):
            for key, value in point.items():
                if again.get(key) != value:
                    return [f"epoch {point.get('epoch')} {key}: {value!r} recorded, {again.get(key)!r} replayed"]
        return [
            f"{k}: {record.metrics[k]!r} recorded, {replayed.get(k)!r} replayed"
            for k in EXACT
            if replayed.get(k) != record.metrics[k]
        ]
    out = []
    for key, limit in TOLERANCE.items():
        then, now = float(record.metrics[key]), float(replayed[key])
        gap = abs(now - then) / max(abs(then), 1e-12) if key in RELATIVE else abs(now - then)
        if not gap <= limit:  # NaN fails too
            unit = f"{gap:.1%} of it" if key in RELATIVE else f"{gap:.4f}"
            out.append(f"{key}: {then:.6f} recorded, {now:.6f} replayed, off by {unit} (tolerance {_limit(key)})")
    return out


def _limit(key: str) -> str:
    return f"{TOLERANCE[key]:.0%} relative" if key in RELATIVE else f"{TOLERANCE[key]:g} absolute"


def replay(root: Path, scratch: Path | None, say: Callable[[str], None]) -> tuple[int, str]:
    """Rerun the trial; (exit code, the verdict line)."""
    record = read_record(root)
    library, extra = FRAMEWORK_LIBRARY[record.framework]
    if importlib.util.find_spec(library) is None:
        raise ReplayError(
            f"{root}: the {record.framework} trainer needs {library}, which this Python lacks: "
            f"pip install -e '.[{extra}]' (or pip install 'katib-nas[{extra}]')"
        )
    with tempfile.TemporaryDirectory(prefix="katib-nas-replay-") as tmp:
        return _run(record, scratch or Path(tmp), say)


def _run(record: Record, scratch: Path, say: Callable[[str], None]) -> tuple[int, str]:
    prov = record.provenance
    source, data_dir = _data(record, scratch)
    try:
        digest = provenance.dataset_digest(load(source, data_dir, scratch))
    except DataError as exc:
        raise ReplayError(f"{record.root / PROVENANCE}: dataset.source: {exc}") from None
    if digest != prov["dataset"]["sha256"]:
        return EXIT_MISMATCH, (
            f"mismatch: the data set {source} here (sha256 {digest[:12]}...) is not the one the trial trained on "
            f"(sha256 {prov['dataset']['sha256'][:12]}...); no rerun on other data can reproduce it"
        )
    device = "cpu" if prov["device"]["type"] == "cpu" else "auto"
    here = {
        "versions": provenance.versions(record.framework),
        "device": {"type": "cpu", "name": provenance.device_name("cpu")},
    }
    expect = differences(prov, here)
    say(
        f"replaying {record.root.name} ({record.framework}, {record.epochs} epochs, seed {record.seed}, "
        f"{prov['dataset']['name']}, {prov['device']['threads']} threads) in {scratch}; expecting "
        + (
            "bit-identical metrics (CPU, same versions and CPU model)"
            if not expect
            else "metrics within tolerance: " + "; ".join(expect)
        )
    )
    argv = trainer_argv(record, scratch / "models", source, data_dir, device)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KATIB_")}  # no chart or Katib identity
    log_path = scratch / "trainer.log"
    scratch.mkdir(parents=True, exist_ok=True)
    recorded = {int(p["epoch"]): p for p in record.curve if isinstance(p, dict) and "epoch" in p}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            point = parse_line(line)
            if "epoch" in point and "accuracy" in point:
                epoch = int(point["epoch"])
                then = recorded.get(epoch, {}).get("accuracy")
                was = f" (recorded {float(then):.6f})" if isinstance(then, int | float) else ""
                say(f"epoch {epoch}/{record.epochs}: accuracy={point['accuracy']:.6f}{was}")
        code = proc.wait()
    out_dir = scratch / "models" / (record.root.parent.name or "replay") / record.root.name
    if code != 0:
        last = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return (
            EXIT_MISMATCH,
            f"mismatch: the replayed trial failed (exit {code}: {last[-1] if last else 'no output'}); log {log_path}",
        )
    replayed = json.loads((out_dir / METRICS).read_text(encoding="utf-8"))
    curve = json.loads((out_dir / CURVE).read_text(encoding="utf-8"))
    now = json.loads((out_dir / PROVENANCE).read_text(encoding="utf-8"))
    reasons = differences(prov, now)
    problems = _compare(record, replayed, curve, exact=not reasons)
    summary = ", ".join(f"{k} {replayed[k]:.6f}" for k in ("accuracy", "test_accuracy"))
    if not reasons:
        if problems:
            return (
                EXIT_MISMATCH,
                f"mismatch: expected bit-identical (CPU, same versions and CPU model), but {problems[0]}",
            )
        return (
            EXIT_MATCH,
            f"match: bit-identical on CPU with the same versions ({summary}, {replayed['epochs_run']} epochs)",
        )
    why = "; ".join(reasons)
    limits = ", ".join(f"{k} {_limit(k)}" for k in TOLERANCE)
    if problems:
        return EXIT_MISMATCH, f"mismatch beyond tolerance ({why}): " + "; ".join(problems)
    return EXIT_MATCH, f"match within tolerance ({limits}), not bit-identical because: {why} ({summary})"
