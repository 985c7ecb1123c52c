"""The `katib-nas` command line. Exit codes: 0 fine, 2 a user mistake (one line per problem,
nothing written or installed), 1 only for `schema --check` drift and a `replay` mismatch, 130 for
`run --local` or `compare` stopped by Ctrl-C (run it again to resume). Bugs keep their traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from katib_nas_contract.best import no_fit_reason, read_pointer
from katib_nas_contract.serving_cost import Budget

from . import helm
from .errors import GeneratorError, LocalRunError, ValuesError
from .importer import dump_values, import_experiment
from .kube import prepare_namespace
from .local import MULTI_OBJECTIVE
from .outputs import atomic_write
from .profiles import dump_profile
from .schema import SCHEMA_PATH, schema_drifted, write_schema
from .validate import DEFAULT_RELEASE, Report, check_release, validate_file

DEFAULT_OUT = Path("out")


def _emit(text: str, output: Path | None, what: str) -> None:
    """Write to OUTPUT atomically (saying so on stderr), or to stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    atomic_write(output, text, "-o")
    print(f"wrote {what} to {output}", file=sys.stderr)


def _checked(path: Path, release: str) -> Report:
    """Validate or raise: warnings go to stderr, errors become a ValuesError."""
    report = validate_file(path, release)
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    if report.errors:
        raise ValuesError(report.errors)
    return report


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            report = _checked(path, args.release)
        except ValuesError as exc:
            print(exc.message, file=sys.stderr)
            failed = True
            continue
        assert report.values is not None and report.profile is not None
        print(
            f"{path}: ok (profile {report.profile.name}; {report.values.experiment.parallelTrialCount} trials in "
            f"parallel requested, {report.trials_at_once} fit)"
        )
    return 2 if failed else 0


def _api_versions(report: Report) -> list[str]:
    assert report.values is not None
    apis = [helm.KATIB_API]
    if report.values.server.enabled and report.values.server.mode == "kserve":
        apis.append(helm.KSERVE_API)
    return apis


def _render(args: argparse.Namespace, report: Report) -> list[dict[str, Any]]:
    """helm template for the profile's Kubernetes version, with the APIs the values need present."""
    assert report.profile is not None
    return helm.template(
        report.raw,
        release=args.release,
        namespace=args.namespace,
        kube_version=f"{report.profile.kubernetesVersion}.0",
        api_versions=_api_versions(report),
    )


def cmd_render(args: argparse.Namespace) -> int:
    report = _checked(args.file, args.release)
    docs = _render(args, report)
    _emit(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True), args.output, f"{len(docs)} objects")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    report = _checked(args.file, args.release)
    assert report.profile is not None
    verb = "dry-run of" if args.dry_run else "installing"
    print(
        f"{verb} release {args.release} into namespace {args.namespace} (profile {report.profile.name})...",
        file=sys.stderr,
    )
    _check_upgrade(args, report)
    done = prepare_namespace(
        args.namespace, create=not args.dry_run, kubeconfig=args.kubeconfig, context=args.kube_context
    )
    print(done, file=sys.stderr)
    result = helm.install(
        report.raw,
        release=args.release,
        namespace=args.namespace,
        dry_run=args.dry_run,
        kubeconfig=args.kubeconfig,
        kubecontext=args.kube_context,
    )
    print(f"release {result['release']} revision {result['revision']}: {result['status']}")
    return 0


def _check_upgrade(args: argparse.Namespace, report: Report) -> None:
    """Before helm upgrades a release, refuse Experiment changes Katib would refuse, naming the values."""
    from .errors import Problem
    from .kube import read_experiment
    from .upgrade import as_helm_upgrades, extension_note, frozen_changes, status_refusals

    deployed = helm.deployed_manifest(
        args.release, namespace=args.namespace, kubeconfig=args.kubeconfig, kubecontext=args.kube_context
    )
    old = next((d for d in deployed or [] if d.get("kind") == "Experiment"), None)
    if old is None:
        return
    new = next((d for d in _render(args, report) if d.get("kind") == "Experiment"), None)
    if new is None or new["metadata"]["name"] != old["metadata"]["name"]:
        return  # a new Experiment: nothing running to conflict with
    new = as_helm_upgrades(old, new)
    changes = frozen_changes(old, new)
    name, namespace = old["metadata"]["name"], old["metadata"].get("namespace") or args.namespace
    live = read_experiment(name, namespace, kubeconfig=args.kubeconfig, context=args.kube_context)
    if live is not None:  # what Katib decides from the Experiment's status: a finished search goes on or not
        said = {path for path, _ in changes}
        changes += [(path, message) for path, message in status_refusals(live, old, new) if path not in said]
    problems = [Problem(str(args.file), path, message) for path, message in changes]
    if problems:
        raise ValuesError(problems)
    note = extension_note(live, new) if live is not None else None
    if note:
        print(note, file=sys.stderr)


def cmd_schema(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.check:
        if schema_drifted(path):
            print(f"{path}: out of date with generator/models.py; run `katib-nas schema`", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    changed = write_schema(path)
    print(f"{path}: {'written' if changed else 'unchanged'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    values = import_experiment(args.experiment, profile=args.profile)
    _emit(dump_values(values, str(args.experiment)), args.output, "the values")
    if not args.output:
        return 0
    report = validate_file(args.output)
    if report.problems:
        print(f"fix these before `katib-nas install {args.output}`:", file=sys.stderr)
        for problem in report.problems:
            print(problem, file=sys.stderr)
    return 0


def cmd_profile_detect(args: argparse.Namespace) -> int:
    from .detect import detect
    from .prerequisites import check as check_prerequisites

    profile = detect(args.name, kubeconfig=args.kubeconfig, context=args.kube_context)
    for line in check_prerequisites(kubeconfig=args.kubeconfig, context=args.kube_context):
        print(f"warning: {line}", file=sys.stderr)
    _emit(dump_profile(profile), args.output, f"profile {profile.name}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .local.plan import missing_framework, plan
    from .local.runner import EXIT_INTERRUPTED, LocalRunner

    if not args.local:
        raise LocalRunError("katib-nas run: only --local is supported; on a cluster use `katib-nas install FILE`")
    report = _checked(args.file, args.release)
    assert report.values is not None
    model_root = args.out / "models"
    trial_plan = plan(report, args.release)
    missing = missing_framework(trial_plan)
    if missing:
        raise LocalRunError(f"{args.file}: trial.framework: {missing}")
    runner = LocalRunner(trial_plan, model_root, parallel=args.parallel, multi_objective=args.multi_objective)
    e = report.values.experiment
    search = (
        f"multi-objective {args.multi_objective} search of {e.objective.objectiveMetricName} and serving p99 "
        f"latency (local only; {e.algorithm.algorithmName} on a cluster)"
        if args.multi_objective
        else f"{e.algorithm.algorithmName} search"
    )
    print(
        f"running {runner.plan.name} locally: {e.maxTrialCount} trials of {report.values.trial.epochs} epochs, "
        f"{runner.parallel} at a time, {search}, "
        f"early stopping {e.earlyStopping.algorithmName if e.earlyStopping.enabled else 'off'}; "
        f"records in {runner.experiment_dir}",
        file=sys.stderr,
    )
    summary = runner.run()
    if summary.interrupted:
        return EXIT_INTERRUPTED
    saved = summary.epochs_planned - summary.epochs_run
    print(
        f"{summary.completed} trials done ({summary.stopped_early} stopped early), {summary.failed} failed in "
        f"{summary.seconds:.0f}s; {summary.epochs_run} of {summary.epochs_planned} planned epochs run "
        f"({saved} saved by early stopping and patience)"
    )
    if summary.best is None:
        raise LocalRunError(f"{args.file}: no trial completed; see the logs in {runner.logs}")
    if (reason := no_fit_reason(summary.best)) is not None:
        raise LocalRunError(f"{args.file}: promotion.budget: {reason}")
    print(
        f"best model: {summary.best['trial']} ({summary.best['metric']}={summary.best['value']:.4f}), "
        f"{runner.experiment_dir / summary.best['model']}"
    )
    if report.values.batchInference.enabled:
        from katib_nas_server import batch

        batch_args = argparse.Namespace(
            experiment_dir=runner.experiment_dir,
            dataset=report.values.batchInference.dataset,
            batch_size=report.values.batchInference.batchSize,
            output_dir=None,
            data_dir=None,
        )
        try:
            batch.run(batch_args, lambda line: print(line, file=sys.stderr))
        except batch.BatchError as exc:
            raise LocalRunError(f"{args.file}: batchInference: {exc}") from None
    print(f"serve it: katib-nas serve {args.file}" + (f" --out {args.out}" if args.out != DEFAULT_OUT else ""))
    return 0


def _local_experiment_dir(args: argparse.Namespace, report: Report) -> Path:
    """Where `katib-nas run --local --out OUT` put this values file's records."""
    from .local.plan import experiment_name

    path: Path = args.out / "models" / experiment_name(report, args.release)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    report = _checked(args.file, args.release)
    assert report.values is not None
    experiment_dir = _local_experiment_dir(args, report)
    pointer = read_pointer(experiment_dir)
    if pointer is None:
        raise LocalRunError(f"{args.file}: no best model in {experiment_dir}; run `katib-nas run --local {args.file}`")
    if (reason := no_fit_reason(pointer)) is not None:
        raise LocalRunError(f"{args.file}: promotion.budget: {reason}")
    os.environ["MODEL_DIR"] = str(experiment_dir)
    os.environ.setdefault("MODEL_NAME", report.values.server.modelName)
    from katib_nas_server.__main__ import main as server_main

    print(f"serving {experiment_dir} on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    return server_main(["serve", f"--host={args.host}", f"--port={args.port}"])


def cmd_report(args: argparse.Namespace) -> int:
    from .local.plan import experiment_name
    from .report import write_report

    report = _checked(args.file, args.release)
    assert report.values is not None
    name = experiment_name(report, args.release)
    experiment_dir = args.experiment_dir or _local_experiment_dir(args, report)
    records = None
    if args.cluster:
        from .report import cluster_trials, records_from_trials

        e = report.values.experiment
        trials = cluster_trials(name, args.namespace, args.kubeconfig, args.kube_context)
        records = records_from_trials(
            trials, e.objective.objectiveMetricName, e.objective.type == "maximize", report.values.trial.epochs
        )
        experiment_dir = args.out / "cluster" / name
    budget = report.values.promotion.budget
    page = write_report(
        experiment_dir,
        report.values.experiment,
        args.output or experiment_dir / "report",
        records,
        Budget(budget.latencyP99Ms, budget.modelBytes),
    )
    print(f"wrote {page} (and its PNGs)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay

    code, verdict = replay(args.record, args.scratch, lambda line: print(line, file=sys.stderr, flush=True))
    print(verdict)
    return code


def cmd_compare(args: argparse.Namespace) -> int:
    import math

    from .compare import compare, read_record_runs
    from .compare.arms import DEFAULT_ARMS, parse_arms
    from .compare.local import prepare, run_all
    from .errors import CompareError

    report = _checked(args.file, args.release)
    assert report.values is not None
    objective = report.values.experiment.objective
    metric, maximize = objective.objectiveMetricName, objective.type == "maximize"
    if args.target is not None and not math.isfinite(args.target):
        raise CompareError(f"--target {args.target}: give a finite {metric} value")
    if args.records:
        if args.algorithms is not None or args.seeds is not None or args.parallel is not None:
            raise CompareError(
                "--records reads searches that already ran: leave out --algorithms, --seeds and --parallel"
            )
        runs = read_record_runs(args.records, metric, maximize)
    else:
        seeds = 5 if args.seeds is None else args.seeds
        if seeds < 1:
            raise CompareError(f"--seeds {seeds}: give 1 or more searches per arm")
        arms = parse_arms(DEFAULT_ARMS if args.algorithms is None else args.algorithms)
        searches = prepare(args.file, report, arms, seeds, args.out, args.release)
        e = report.values.experiment
        print(
            f"comparing {', '.join(a.label for a in arms)} over {seeds} seed(s): {len(searches)} searches of "
            f"{e.maxTrialCount} trials x {report.values.trial.epochs} epochs, one after another; records in "
            f"{args.out / 'runs'}",
            file=sys.stderr,
        )
        ran = run_all(searches, args.parallel, metric, maximize)
        if ran is None:
            from .local.runner import EXIT_INTERRUPTED

            print("interrupted: run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        runs = ran
    result = compare(runs, args.out, str(args.file), metric, maximize, args.target)
    print(result.verdict_line)
    print(f"wrote {result.page} and {result.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="katib-nas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def release_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--release", default=DEFAULT_RELEASE, help="Helm release name (default: %(default)s)")

    p = sub.add_parser("validate", help="check values files against their cluster profile")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    release_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="validate, then helm template with the profile's Kubernetes version")
    p.add_argument("file", type=Path, metavar="FILE")
    release_options(p)
    p.add_argument("--namespace", default="default")
    p.add_argument("-o", "--output", type=Path, help="write the manifests here instead of stdout")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("install", help="validate, then helm upgrade --install")
    p.add_argument("file", type=Path, metavar="FILE")
    release_options(p)
    p.add_argument("--namespace", default="default")
    p.add_argument("--dry-run", action="store_true", help="let helm and the cluster check everything, change nothing")
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument("--kube-context")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("run", help="run the Experiment: --local runs it on this machine with no cluster")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--local", action="store_true", help="trials as local processes (the only mode so far)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="records go to OUT/models (default: %(default)s)")
    p.add_argument("--parallel", type=int, help="trials at once (default: parallelTrialCount, capped by cores)")
    p.add_argument(
        "--multi-objective",
        choices=MULTI_OBJECTIVE,
        help="local only (Katib has no multi-objective algorithm): search the objective and the serving p99 latency "
        "together with Optuna's NSGA-II or multi-objective TPE instead of experiment.algorithm",
    )
    release_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve the best model of a local run")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    release_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="HTML report and PNGs of a search, from its trial records")
    p.add_argument("file", type=Path, metavar="FILE", help="the values file the search ran")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="a local run's --out (default: %(default)s)")
    p.add_argument("--experiment-dir", type=Path, help="trial records elsewhere, e.g. copied off a cluster's model PVC")
    p.add_argument("--cluster", action="store_true", help="read the Experiment's Trials through the kubeconfig")
    p.add_argument("--namespace", default="default", help="with --cluster (default: %(default)s)")
    p.add_argument("--kubeconfig")
    p.add_argument("--kube-context")
    p.add_argument("-o", "--output", type=Path, help="report folder (default: <experiment dir>/report)")
    release_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare search algorithms over seeds: run here, or read copied records")
    p.add_argument("file", type=Path, metavar="FILE", help="the values file: search space, trials and objective")
    p.add_argument(
        "--algorithms",
        help="arms as ALGORITHM[+RULE], comma-separated; RULE none, median or successive-halving overrides the "
        "file's early stopping, a rule alone means random+RULE "
        "(default: random,tpe,bayesianoptimization,random+successive-halving)",
    )
    p.add_argument("--seeds", type=int, help="searches per arm, seeds 1..N (default: 5)")
    p.add_argument("--parallel", type=int, help="trials at once in each search (default: as `run --local`)")
    p.add_argument(
        "--records",
        nargs="+",
        metavar="ARM=DIR",
        help="compare searches that already ran: each DIR one Experiment's trial records (copied off the "
        "model volume with tar, which keeps file times); an ARM given again is another seed",
    )
    p.add_argument("--target", type=float, help="objective for time-to-target (default: median of the final bests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "compare", help="report and runs (default: %(default)s)")
    release_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("replay", help="rerun a trial from its record and say whether the metrics match")
    p.add_argument("record", type=Path, metavar="RECORD", help="a trial record: <model root>/<experiment>/<trial>/")
    p.add_argument("--scratch", type=Path, help="train here and keep it (default: a temporary directory, removed)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("schema", help="write charts/katib-nas/values.schema.json from the models")
    p.add_argument("--check", action="store_true", help="exit 1 if the committed schema is out of date")
    p.add_argument("--file", type=Path, default=SCHEMA_PATH, help="schema path (default: the chart's)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("import", help="turn a Katib Experiment YAML into a values file")
    p.add_argument("experiment", type=Path, metavar="EXPERIMENT.yaml")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--profile", default="microk8s", help="profile the values file names (default: %(default)s)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("profile", help="cluster profiles")
    psub = p.add_subparsers(dest="profile_command", required=True)
    d = psub.add_parser("detect", help="write a profile from the current kubeconfig's cluster")
    d.add_argument("-o", "--output", type=Path)
    d.add_argument("--name", default="detected")
    d.add_argument("--kubeconfig")
    d.add_argument("--kube-context")
    d.set_defaults(func=cmd_profile_detect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if isinstance(getattr(args, "release", None), str):
            check_release(args.release)
        code: int = args.func(args)
    except GeneratorError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    return code
