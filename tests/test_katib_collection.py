"""The generator against Katib's metrics collection, judged by Katib's own code: metricsFormat
filters by Go's regexp.Compile (as Katib's webhook and collectors compile them), metrics file paths by
Katib's pod mutator and then the API server that receives the mutated trial pod."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.checks_metrics import compile_like_go, regex_error
from generator.validate import validate_data

from .conftest import ROOT, by_kind, helm_template
from .controlplane import ControlPlane, start_control_plane
from .katib_harness import katibcheck, mutate_pods
from .test_validate import merged

# Pieces of patterns: RE2 syntax, Perl/Python-only syntax Go refuses, and malformed pieces.
TOKENS = [
    "a", "Z", "0", "-", "=", " ", "é", "ß", "\u263a", ".", "^", "$", "|", "(", ")", "(?:", "(?P<n>", "(?<n>",
    "(?P<m>", "(?i)", "(?s)", "(?m)", "(?U)", "(?x)", "(?=", "(?!", "(?<=", "(?<!", "(?#", "(?P=n)", "*", "+", "?",
    "*?", "+?", "??", "*+", "++", "{2}", "{2,}", "{2,5}", "{5,2}", "{1000}", "{1001}", "{,3}", "{", "}", "[", "]",
    "[a-z]", "[^x]", "[z-a]", "[[:alpha:]]", "[[:word:]]", "[[:foo:]]", "[\\d\\s]", "[a-\\d]", "[]a]", "[^]",
    "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\b", "\\B", "\\A", "\\z", "\\Z", "\\G", "\\C", "\\K", "\\R", "\\h",
    "\\pL", "\\p{Greek}", "\\p{Foo}", "\\PN", "\\pZ", "\\Q.*\\E", "\\Q", "\\E", "\\1", "\\8", "\\0", "\\01",
    "\\x41", "\\x{263a}", "\\x{110000}", "\\xZ", "\\e", "\\a", "\\f", "\\v", "\\t", "\\n", "\\r", "\\cA",
    "\\N{DIGIT ONE}", "\\u0041", "\\.", "\\(", "\\)", "\\\\", "\\-", "\\=", "\\_", "\\",
]  # fmt: skip
PATTERNS = st.lists(st.sampled_from(TOKENS), max_size=8).map("".join)
REGEX_BATCH = 100


@settings(max_examples=25, deadline=None)
@given(st.lists(PATTERNS, min_size=REGEX_BATCH, max_size=REGEX_BATCH))
def test_the_generator_refuses_exactly_the_filters_gos_regexp_refuses(patterns: list[str]) -> None:
    for pattern, go in zip(patterns, katibcheck("regexp", patterns), strict=True):
        ours = regex_error(pattern)
        assert (ours is None) == ("error" not in go), (pattern, ours, go)
        if ours is None:
            assert compile_like_go(pattern).groups == go["groups"], pattern


def test_filter_messages_name_the_fix() -> None:
    base = merged(_base(), {"experiment": {"metricsCollector": {"kind": "StdOut"}}})
    for pattern, fragment in [
        (r"(\w+)=(?=\d)(\d+)", "Go's regexp, which refuses it"),
        (r"(\w+)=\d+", "two groups in parentheses"),
        (r"(?:\w+)=(\d+)\(x\)", "fewer than two capturing groups"),
    ]:
        data = merged(base, {"experiment": {"metricsCollector": {"source": {"filter": {"metricsFormat": [pattern]}}}}})
        messages = [p.message for p in validate_data(data, "v.yaml").problems if "metricsFormat" in p.path]
        assert len(messages) == 1 and fragment in messages[0], (pattern, messages)


# --- metrics file paths: Katib's pod mutator, then the API server ----------------------------


def _base() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    return data


def _collector(kind: str, path: str) -> dict[str, Any]:
    if kind == "StdOut":
        return {"kind": "StdOut", "source": None}
    fsp = {"path": path, "kind": "File", "format": "TEXT"} if kind == "File" else {"path": path, "kind": "Directory"}
    return {"kind": kind, "source": {"fileSystemPath": fsp}}


@st.composite
def metrics_layouts(draw: st.DrawFn) -> tuple[str, str, str]:
    """(collector kind, model PVC mountPath, metrics path): directories the chart mounts, Katib's own,
    new ones, and spellings of the same directory (trailing slash, `//`, `/./`)."""
    mount = draw(st.sampled_from(["/models", "/data/models", "/var/log/katib", "/mnt/m"]))
    kind = draw(st.sampled_from(["StdOut", "File", "TensorFlowEvent"]))
    directory = draw(st.sampled_from(["/tmp", mount, "/var/log/katib", "/tmp/metrics", f"{mount}/metrics", "/opt/m"]))
    spelling = draw(st.sampled_from(["{}", "{}/", "/{}", "{}/."]))
    directory = spelling.format(directory).replace("//", "/") if spelling != "/{}" else "/" + directory
    path = directory if kind == "TensorFlowEvent" else posixpath.join(directory, "metrics.log")
    return kind, mount, path


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    from kubernetes import client

    cp = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    try:
        core = client.CoreV1Api(cp.api())
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="ml")))
        yield cp
    finally:
        cp.stop()


def _api_server_refusal(cp: ControlPlane, pod: dict[str, Any]) -> str | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(cp.api())
    account = pod["spec"].get("serviceAccountName") or "default"  # no controller manager makes "default" here
    if account:
        try:
            core.create_namespaced_service_account(
                "ml", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
    try:
        core.create_namespaced_pod("ml", pod, dry_run="All")
    except ApiException as exc:
        if exc.status == 422:
            return str(exc.body)
        raise
    return None


@settings(max_examples=12, deadline=None)
@given(st.lists(metrics_layouts(), min_size=4, max_size=4))
def test_the_generator_refuses_exactly_the_metrics_paths_katibs_mutated_pods_are_refused_for(
    control_plane: ControlPlane, layouts: list[tuple[str, str, str]]
) -> None:
    cases, verdicts = [], []
    for kind, mount, path in layouts:
        data = merged(_base(), {"persistence": {"mountPath": mount}})
        data["experiment"]["metricsCollector"] = _collector(kind, path)
        data["experiment"]["earlyStopping"] = {"enabled": False}
        report = validate_data(data, "v.yaml")
        assert report.values is not None, [str(p) for p in report.problems]
        refused = [p.message for p in report.errors if "duplicate mountPath" in p.message]
        verdicts.append((kind, mount, path, refused))
        (experiment,) = by_kind(helm_template(values=data, namespace="ml"), "Experiment")
        cases.append({"experiment": experiment})
    for (kind, mount, path, refused), mutated in zip(verdicts, mutate_pods(cases), strict=True):
        assert "error" not in mutated, mutated
        api = _api_server_refusal(control_plane, mutated["pod"])
        assert bool(refused) == (api is not None), (kind, mount, path, refused, api)
        if api is not None:
            assert "must be unique" in api, api
