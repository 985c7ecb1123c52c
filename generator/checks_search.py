"""Checks of the Experiment part of the values: what Katib's webhook rejects at submission, and what
Katib accepts but fails on later (in the suggestion service, the trial pods or the collector).

Each check yields (value path, message) pairs; the message says what is wrong and how to fix it.
Katib sources these rules follow: pkg/webhook/v1beta1/experiment/validator/validator.go and
ValidateEarlyStoppingSettings of medianstop. Algorithm settings are judged by the service that serves
the algorithm on the profile's cluster (suggestion_services.py, called by validate.py); the metrics
collector's directory and filters by what Katib's pod mutator and Go's regexp do (checks_metrics.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from katib_nas_contract.args import option_names
from katib_nas_contract.flags import Spec, Trainer, trainer_for_image

from .checks_metrics import check_metrics_directory, check_metrics_formats
from .models import ChartValues, Experiment, Parameter, Setting
from .service_numbers import py_int
from .suggestion_services import grid_points

Finding = tuple[str, str]

# Katib's webhook refuses longer Experiment names.
EXPERIMENT_NAME_MAX = 40
# Katib passes its early-stopping rules (-stop-rule) to every collector sidecar, but only the
# file-metrics-collector (StdOut, File) takes them: the TensorFlowEvent collector's argparse exits on them.
EARLY_STOPPING_COLLECTORS = ("StdOut", "File")
# Katib's `${trialSpec.X}` meta references (consts.TrialTemplateMetaKeys).
META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Labels\[.+\]|Annotations\[.+\])\}$")
TRIAL_PARAMETER_USE = re.compile(r"\$\{trialParameters\.(.+?)\}")


def fullname(release: str, values: ChartValues) -> str:
    """The chart's katib-nas.fullname helper, in Python."""
    if values.fullnameOverride:
        return values.fullnameOverride[:63].rstrip("-")
    name = values.nameOverride or "katib-nas"
    full = release if name in release else f"{release}-{name}"
    return full[:63].rstrip("-")


def experiment_name(release: str, values: ChartValues) -> str:
    return values.experiment.name or fullname(release, values)


def number(value: Any) -> float | None:
    """The value as a finite double, as Katib reads a bound; None when it is no number or too large for one."""
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):  # an int past a double's range overflows
        return None
    return result if math.isfinite(result) else None


def settings_dict(settings: list[Setting]) -> dict[str, str]:
    return {s.name: str(s.value) for s in settings}


def check_search(values: ChartValues, release: str) -> Iterator[Finding]:
    e = values.experiment
    yield from _counts(e)
    yield from _names(values, release)
    yield from _objective(e)
    yield from _space(e)
    yield from _algorithm(e)
    yield from _early_stopping(values)
    yield from _collector(values)
    yield from _trial_template(values)
    trainer = trainer_for_image(values.trial.image_repository())
    if trainer is not None:
        yield from _trainer_contract(values, trainer)


def _counts(e: Experiment) -> Iterator[Finding]:
    if e.parallelTrialCount > e.maxTrialCount:
        yield (
            "experiment.parallelTrialCount",
            f"{e.parallelTrialCount} is larger than maxTrialCount {e.maxTrialCount}; Katib rejects it, "
            f"set it to {e.maxTrialCount} or less",
        )
    if e.maxFailedTrialCount > e.maxTrialCount:
        yield (
            "experiment.maxFailedTrialCount",
            f"{e.maxFailedTrialCount} is larger than maxTrialCount {e.maxTrialCount}; Katib rejects it, "
            f"set it to {e.maxTrialCount} or less",
        )


def _names(values: ChartValues, release: str) -> Iterator[Finding]:
    """Katib's webhook rule for Experiment names (ValidateExperiment). At 40 characters the names
    Katib derives from it (trials <name>-<8 chars>, services <name>-<algorithm>) fit in 63."""
    name = experiment_name(release, values)
    path = "experiment.name" if values.experiment.name else "fullnameOverride"
    if len(name) > EXPERIMENT_NAME_MAX:
        yield (
            path,
            f"Experiment name {name!r} has {len(name)} characters; Katib's webhook refuses names longer "
            f"than {EXPERIMENT_NAME_MAX}, set experiment.name to a shorter one",
        )
    if not name[:1].isascii() or not name[:1].islower():
        yield (path, f"Experiment name {name!r} must start with a lowercase letter for Katib; set experiment.name")


def _objective(e: Experiment) -> Iterator[Finding]:
    o = e.objective
    if o.objectiveMetricName in o.additionalMetricNames:
        yield (
            "experiment.objective.additionalMetricNames",
            f"contains the objective metric {o.objectiveMetricName!r}; Katib rejects it, remove it from the list",
        )
    for i, strategy in enumerate(o.metricStrategies):
        if strategy.name not in (o.objectiveMetricName, *o.additionalMetricNames):
            yield (
                f"experiment.objective.metricStrategies[{i}].name",
                f"{strategy.name!r} is neither the objective nor an additional metric; add it to "
                "additionalMetricNames or remove the strategy",
            )


def _space(e: Experiment) -> Iterator[Finding]:
    if not e.parameters and e.nasConfig is None:
        yield (
            "experiment.parameters",
            "is empty and experiment.nasConfig is unset; Katib needs a search space, add parameters",
        )
    if e.parameters and e.nasConfig is not None:
        yield (
            "experiment.nasConfig",
            "is set together with experiment.parameters; Katib accepts only one, remove one of them",
        )
    seen: dict[str, int] = {}
    for i, p in enumerate(e.parameters):
        if p.name in seen:
            yield (
                f"experiment.parameters[{i}].name",
                f"{p.name!r} duplicates experiment.parameters[{seen[p.name]}]; rename or remove one",
            )
        seen.setdefault(p.name, i)
        yield from _parameter(f"experiment.parameters[{i}]", p)


def _parameter(path: str, p: Parameter) -> Iterator[Finding]:
    fs = p.feasibleSpace
    space = f"{path}.feasibleSpace"
    if p.parameterType in ("int", "double"):
        if fs.list is not None:
            yield (f"{space}.list", f"is not supported for parameterType {p.parameterType}; use min and max")
        if fs.min is None or fs.max is None:
            yield (space, f"min and max are required for parameterType {p.parameterType}")
            return
        lo, hi = number(fs.min), number(fs.max)
        for key, raw, val in (("min", fs.min, lo), ("max", fs.max, hi)):
            if val is None:
                yield (f"{space}.{key}", f"{raw!r} is not a number")
            elif p.parameterType == "int" and not float(val).is_integer():
                yield (f"{space}.{key}", f"{raw!r} is not an integer; parameterType int needs whole numbers")
        if lo is None or hi is None:
            return
        if lo >= hi:
            yield (space, f"min must be < max (min {fs.min}, max {fs.max}); swap or widen them")
        if fs.step is not None:
            step = number(fs.step)
            if step is None or step <= 0:
                yield (f"{space}.step", f"{fs.step!r} must be a positive number")
            elif lo < hi and step > hi - lo:
                yield (
                    f"{space}.step",
                    f"{fs.step} is larger than the range {fs.min}..{fs.max}; use a step of at most max - min",
                )
            elif p.parameterType == "int" and not step.is_integer():
                yield (f"{space}.step", f"{fs.step!r} is not an integer; parameterType int needs a whole step")
        if fs.distribution in ("logUniform", "logNormal") and lo <= 0:
            yield (f"{space}.min", f"{fs.min} must be > 0 for distribution {fs.distribution}")
    else:
        for key in ("min", "max", "step"):
            if getattr(fs, key) is not None:
                yield (
                    f"{space}.{key}",
                    f"is not supported for parameterType {p.parameterType}; list the values under feasibleSpace.list",
                )
        if not fs.list:
            yield (f"{space}.list", f"is empty; parameterType {p.parameterType} needs at least one value")
            return
        texts = [str(v) for v in fs.list]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        if dupes:
            yield (f"{space}.list", f"has duplicate values {dupes}; list each value once")
        if p.parameterType == "discrete":
            bad = [t for t in texts if number(t) is None]
            if bad:
                yield (f"{space}.list", f"discrete values must be numbers, not {bad}; use parameterType categorical")


_INT_SETTING = re.compile(r"^-?\d+$")


def grid_size(parameters: list[Parameter]) -> int | None:
    """Number of grid points as Katib's grid service counts them, or None when it has no finite grid."""
    return grid_points(parameters)


def _algorithm(e: Experiment) -> Iterator[Finding]:
    """What holds for an algorithm whichever service serves it; the settings are checked against the
    cluster's service in suggestion_services.check_algorithm_settings."""
    name = e.algorithm.algorithmName
    if name in ("enas", "darts"):
        if e.nasConfig is None:
            yield (
                "experiment.nasConfig",
                f"{name} needs a nasConfig (graphConfig and operations) instead of "
                "parameters; add experiment.nasConfig or pick an HPO algorithm",
            )
        return
    if e.nasConfig is not None:
        yield ("experiment.algorithm.algorithmName", f"{name} cannot use experiment.nasConfig; use enas or darts")
    if name == "bayesianoptimization":
        for i, p in enumerate(e.parameters):
            if p.parameterType != "double":
                continue
            lo = number(p.feasibleSpace.min)
            if lo is not None and lo <= 0:
                yield (
                    f"experiment.parameters[{i}].feasibleSpace.min",
                    f"{p.feasibleSpace.min} must be > 0 for bayesianoptimization: Katib's skopt service samples "
                    "doubles log-uniformly in older releases and fails; use a small positive min such as 1e-6",
                )
            if p.feasibleSpace.distribution in ("normal", "logNormal"):
                yield (
                    f"experiment.parameters[{i}].feasibleSpace.distribution",
                    "bayesianoptimization supports only uniform and logUniform",
                )


def _early_stopping(values: ChartValues) -> Iterator[Finding]:
    es = values.experiment.earlyStopping
    if not es.enabled:
        return
    path = "experiment.earlyStopping.algorithmSettings"
    known = ("min_trials_required", "start_step") + (
        ("reduction_factor",) if es.algorithmName == "successive-halving" else ()
    )
    for i, s in enumerate(es.algorithmSettings):
        value = str(s.value)
        # medianstop's ValidateEarlyStoppingSettings parses with Python's int(); the trainer's rules take digits.
        digits = py_int(value) if _INT_SETTING.match(value) else None
        number = py_int(value) if es.algorithmName == "medianstop" else digits
        if s.name == "min_trials_required":
            if number is None or number <= 0:
                yield (f"{path}[{i}].value", f"min_trials_required must be an integer > 0, not {value!r}")
        elif s.name == "start_step":
            if number is None or number < 1:
                yield (f"{path}[{i}].value", f"start_step must be an integer >= 1, not {value!r}")
        elif s.name == "reduction_factor" and s.name in known:
            if number is None or number < 2:
                yield (f"{path}[{i}].value", f"reduction_factor must be an integer >= 2, not {value!r}")
        else:
            yield (f"{path}[{i}].name", f"{es.algorithmName} has no setting {s.name!r}; use {' or '.join(known)}")
    if es.algorithmName != "medianstop":
        if trainer_for_image(values.trial.image_repository()) is None:
            yield (
                "experiment.earlyStopping.algorithmName",
                f"{es.algorithmName} is applied by the katib-nas trainer (its --early-stopping flags), not by "
                f"{values.trial.image_repository()}; use algorithmName=medianstop with your own trainer",
            )
        return
    kind = values.experiment.metricsCollector.kind
    if kind not in EARLY_STOPPING_COLLECTORS:
        yield (
            "experiment.earlyStopping.enabled",
            f"Katib's medianstop works only with the StdOut and File collectors, which read metrics as they "
            f"are reported, not {kind}; set metricsCollector.kind=StdOut or earlyStopping.enabled=false",
        )


def _collector(values: ChartValues) -> Iterator[Finding]:
    mc = values.experiment.metricsCollector
    src = mc.source
    fsp = src.fileSystemPath if src else None
    path = "experiment.metricsCollector"
    if mc.kind == "File":
        if fsp is None or fsp.kind != "File" or not fsp.path.startswith("/"):
            yield (f"{path}.source.fileSystemPath", "the File collector needs an absolute file path with kind File")
        elif fsp.format not in ("TEXT", "JSON"):
            yield (f"{path}.source.fileSystemPath.format", "the File collector needs format TEXT or JSON")
        elif fsp.format == "JSON" and src is not None and src.filter is not None:
            yield (f"{path}.source.filter", "must be unset when the metrics file format is JSON")
    elif mc.kind == "TensorFlowEvent":
        if fsp is None or fsp.kind != "Directory" or not fsp.path.startswith("/"):
            yield (
                f"{path}.source.fileSystemPath",
                "the TensorFlowEvent collector needs an absolute directory path with kind Directory",
            )
        elif fsp.format is not None:
            yield (f"{path}.source.fileSystemPath.format", "must be unset for the TensorFlowEvent collector")
    elif mc.kind == "PrometheusMetric":
        # The webhook looks the kind up in katib-config's runtime.metricsCollectors; Katib v0.19's has none.
        yield (
            f"{path}.kind",
            "Katib v0.19's katib-config has no PrometheusMetric collector (it lists StdOut, File and "
            "TensorFlowEvent), so its webhook refuses the Experiment; print name=value lines and use StdOut",
        )
    elif mc.kind == "Custom" and mc.customCollector is None:
        yield (f"{path}.customCollector", "the Custom collector needs a container spec")
    if src is not None and src.filter is not None:
        formats = [str(f) for f in src.filter.model_dump().get("metricsFormat") or []]
        yield from check_metrics_formats(formats, f"{path}.source.filter.metricsFormat")
    yield from check_metrics_directory(values)


def _trial_template(values: ChartValues) -> Iterator[Finding]:
    t = values.trial
    if not t.args and not t.trialParameters:
        return
    if t.args and not t.trialParameters:
        yield (
            "trial.trialParameters",
            "is empty but trial.args is set; verbatim args need their trialParameters "
            "(or leave trial.args empty to have the flags generated)",
        )
        return
    names = {p.name for p in values.experiment.parameters}
    seen_names: set[str] = set()
    seen_refs: set[str] = set()
    for i, tp in enumerate(t.trialParameters):
        if tp.name in seen_names:
            yield (f"trial.trialParameters[{i}].name", f"{tp.name!r} is listed twice; Katib rejects duplicates")
        if tp.reference in seen_refs:
            yield (f"trial.trialParameters[{i}].reference", f"{tp.reference!r} is referenced twice; Katib rejects it")
        seen_names.add(tp.name)
        seen_refs.add(tp.reference)
        if names and tp.reference not in names and not META_REFERENCE.match(tp.reference):
            yield (
                f"trial.trialParameters[{i}].reference",
                f"{tp.reference!r} is not an experiment parameter; use one of {sorted(names)}",
            )
    # Katib's webhook searches the whole trialSpec text, so a reference counts wherever the chart puts it.
    uses = {path: set(TRIAL_PARAMETER_USE.findall(text)) for path, text in _trial_spec_texts(values)}
    used = set().union(*uses.values())
    for i, tp in enumerate(t.trialParameters):
        if tp.name not in used:
            yield (
                f"trial.trialParameters[{i}].name",
                f"${{trialParameters.{tp.name}}} is not used in the trial (args, env or elsewhere in the Job); "
                "Katib rejects unused trialParameters",
            )
    for name in sorted(used - seen_names):
        where = next(path for path, found in uses.items() if name in found)
        yield (where, f"${{trialParameters.{name}}} has no entry in trial.trialParameters; add one")


def _trial_spec_texts(values: ChartValues) -> Iterator[tuple[str, str]]:
    """(value path, text) of every value the chart renders into the trial Job, keys included."""
    t = values.trial
    fields: list[tuple[str, Any]] = [
        ("trial.image", t.image.model_dump()),
        ("trial.command", t.command),
        ("trial.args", t.args),
        ("trial.extraArgs", t.extraArgs),
        ("trial.env", t.env),
        ("trial.resources", t.resources),
        ("trial.nodeSelector", t.nodeSelector),
        ("trial.tolerations", t.tolerations),
        ("trial.affinity", t.affinity),
        ("trial.runtimeClassName", t.runtimeClassName),
        ("podSecurityContext", values.podSecurityContext),
        ("securityContext", values.securityContext),
        ("persistence.mountPath", values.persistence.mountPath),
    ]
    for path, node in fields:
        yield path, json.dumps(node, default=str)


def _trainer_contract(values: ChartValues, trainer: Trainer) -> Iterator[Finding]:
    e = values.experiment
    o = e.objective
    t = values.trial
    if trainer.framework != t.framework:
        yield (
            "trial.framework",
            f"{t.image_repository()} is the katib-nas {trainer.framework} trainer, not {t.framework}; set "
            f"trial.framework: {trainer.framework}, or leave trial.image.repository empty for the {t.framework} one",
        )
    elif t.command and t.command[-1:] != list(trainer.command[-1:]):
        yield (
            "trial.command",
            f"the katib-nas {trainer.framework} trainer image runs `{' '.join(trainer.command)}`, not "
            f"`{' '.join(t.command)}`; leave trial.command empty for the framework's command",
        )
    for path, metric in [("experiment.objective.objectiveMetricName", o.objectiveMetricName)] + [
        (f"experiment.objective.additionalMetricNames[{i}]", m) for i, m in enumerate(o.additionalMetricNames)
    ]:
        if metric not in trainer.metrics:
            yield (
                path,
                f"the katib-nas trainer never prints {metric!r}, so Katib would record no value; "
                f"use one of {', '.join(trainer.metrics)}",
            )
    if e.nasConfig is not None:
        yield (
            "experiment.nasConfig",
            "the katib-nas trainer builds architectures from parameters, not enas/darts "
            "nasConfig; use your own trainer image (trial.image, command, args)",
        )
    if t.trialParameters:
        yield from _trainer_args(values, trainer)
        return
    for i, p in enumerate(e.parameters):
        flag = trainer.flags.get(p.name)
        if flag is None:
            yield (
                f"experiment.parameters[{i}].name",
                f"the katib-nas trainer has no flag --{p.name}; use one of {', '.join(sorted(trainer.flags))}",
            )
            continue
        yield from _space_fits_flag(i, p, p.name, flag)


def _trainer_args(values: ChartValues, trainer: Trainer) -> Iterator[Finding]:
    """Verbatim args (imported Experiments): every flag must be one the trainer takes, and a search
    parameter that reaches a flag through a trialParameter must fit the flag's range."""
    t = values.trial
    options = option_names()
    references = {tp.name: tp.reference for tp in t.trialParameters}
    parameters = {p.name: (i, p) for i, p in enumerate(values.experiment.parameters)}
    for path, args in (("trial.args", t.args), ("trial.extraArgs", t.extraArgs)):
        for j, arg in enumerate(args):
            if not arg.startswith("--"):
                continue
            name, _, value = arg[2:].partition("=")
            if name not in options:
                yield (
                    f"{path}[{j}]",
                    f"the katib-nas {trainer.framework} trainer has no flag --{name}; its flags are "
                    f"{', '.join(sorted(options))}",
                )
                continue
            use = TRIAL_PARAMETER_USE.fullmatch(value)
            flag = trainer.flags.get(name)
            if use and flag and references.get(use.group(1)) in parameters:
                i, p = parameters[references[use.group(1)]]
                yield from _space_fits_flag(i, p, name, flag)


def _space_fits_flag(i: int, p: Parameter, flag_name: str, flag: Spec) -> Iterator[Finding]:
    fs = p.feasibleSpace
    candidates = list(fs.list or []) if p.parameterType in ("categorical", "discrete") else [fs.min, fs.max]
    for value in candidates:
        if value is None:
            continue
        problem = _flag_problem(flag, value)
        if problem:
            yield (f"experiment.parameters[{i}].feasibleSpace", f"--{flag_name}={value} {problem}")
            break


def _flag_problem(flag: Any, value: Any) -> str | None:
    if flag.kind == "choice":
        return None if str(value) in flag.choices else f"is not accepted; choose from {', '.join(flag.choices)}"
    num = number(value)
    if num is None or (flag.kind == "int" and not num.is_integer()):
        return f"is not {'an integer' if flag.kind == 'int' else 'a number'}"
    low_ok = num > flag.low if flag.low_open else num >= flag.low
    if not low_ok or num > flag.high:
        bracket = "(" if flag.low_open else "["
        return f"is out of the trainer's range {bracket}{flag.low:g}, {flag.high:g}]"
    return None
