"""The katib-nas command's contract: exit codes, one line per problem, nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generator.cli import main
from generator.errors import ClusterError
from generator.kube import prepare_namespace
from generator.schema import SCHEMA_PATH

from .conftest import ROOT, by_kind, tool_env

MICROK8S = ROOT / "values" / "microk8s.yaml"
KATIB_EXPERIMENT = sorted((ROOT / "tests" / "data" / "katib").glob("*.yaml"))[0]


def test_schema_check_passes_on_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--check"]) == 0
    assert capsys.readouterr().out == f"{SCHEMA_PATH}: up to date\n"


def test_schema_check_exits_1_on_drift_and_schema_rewrites_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "values.schema.json"
    shutil.copy(SCHEMA_PATH, stale)
    stale.write_text(stale.read_text().replace('"minimum": 1', '"minimum": 0', 1))
    assert main(["schema", "--check", "--file", str(stale)]) == 1
    assert "out of date with generator/models.py" in capsys.readouterr().err
    assert main(["schema", "--file", str(stale)]) == 0
    assert stale.read_text() == SCHEMA_PATH.read_text()


def test_render_writes_the_profile_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM", tool_env()["HELM"])
    out = tmp_path / "out" / "microk8s.yaml"
    assert main(["render", str(MICROK8S), "--namespace", "ml", "-o", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert {d["kind"] for d in docs} >= {"Experiment", "PersistentVolumeClaim", "Job", "Deployment", "Service"}
    assert by_kind(docs, "Experiment")[0]["metadata"]["namespace"] == "ml"
    assert capsys.readouterr().err == f"wrote {len(docs)} objects to {out}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["microk8s.yaml"]


DEAD_CLUSTER = {  # nothing listens on port 9
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "dead",
    "clusters": [{"name": "dead", "cluster": {"server": "https://127.0.0.1:9"}}],
    "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
}


def test_install_without_a_cluster_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM", tool_env()["HELM"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(DEAD_CLUSTER))
    proc = subprocess.run(
        ["katib-nas", "install", str(MICROK8S), "--dry-run", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert proc.returncode == 2
    err = proc.stderr.splitlines()
    assert err[0] == "dry-run of release nas into namespace default (profile microk8s)..."
    assert len(err) == 2 and err[1].startswith("cannot reach the cluster (")
    assert err[1].endswith("); check KUBECONFIG / kubectl config current-context")


def test_namespace_check_without_a_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(DEAD_CLUSTER))
    with pytest.raises(ClusterError) as failed:
        prepare_namespace("ml", create=True, kubeconfig=kubeconfig, context=None)
    assert failed.value.message.startswith("cannot reach the cluster (")
    assert failed.value.message.endswith("); check KUBECONFIG / kubectl config current-context")
    assert "\n" not in failed.value.message


def test_profile_detect_without_a_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    out = tmp_path / "profile.yaml"
    assert main(["profile", "detect", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot load a kubeconfig (") and err.count("\n") == 1
    assert not out.exists()


def test_console_script_and_module_agree() -> None:
    env = dict(os.environ, **{k: v for k, v in tool_env().items() if k in ("PATH", "HELM")})
    script = subprocess.run(["katib-nas", "validate", str(MICROK8S)], capture_output=True, text=True, env=env)
    module = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "generator", "validate", str(MICROK8S)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2


def test_an_output_path_that_cannot_be_written_is_one_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM", tool_env()["HELM"])
    experiment = (
        ROOT
        / "tests"
        / "data"
        / "katib"
        / sorted(p.name for p in (ROOT / "tests" / "data" / "katib").glob("*.yaml"))[0]
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-dir").mkdir()
    (work / "a-file").write_text("")
    long_name = "x" * 300 + ".yaml"  # longer than a file name may be: fails after its directories are made
    cases = [
        (work / "a-dir", "is a directory; give the path of a file"),
        (
            work / "a-file" / "out.yaml",
            f"cannot write it ({work / 'a-file'}: not a directory); give a file in a directory you can write",
        ),
        (
            Path("/proc/no-such-dir/out.yaml"),
            "cannot write it (/proc/no-such-dir: no such file or directory); give a file in a directory you can write",
        ),
        (
            work / "new" / "deeper" / long_name,
            f"cannot write it ({work / 'new' / 'deeper'}: file name too long); give a "
            "file in a directory you can write",
        ),
    ]
    for output, message in cases:
        for command in (["render", str(MICROK8S)], ["import", str(experiment)]):
            assert main([*command, "-o", str(output)]) == 2
            assert capsys.readouterr().err == f"-o {output}: {message}\n"
    assert sorted(p.name for p in work.iterdir()) == ["a-dir", "a-file"]
    assert list((work / "a-dir").iterdir()) == []


@pytest.mark.parametrize("release", ["Bad_Rel", "a" * 54, "-nas", ""])
def test_a_release_name_helm_refuses_is_one_line(release: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "render", "install"):
        assert main([command, str(MICROK8S), f"--release={release}"]) == 2
        assert capsys.readouterr().err == (
            f"--release {release!r}: helm refuses it as a release name; use at most 53 lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit\n"
        )


def test_the_longest_release_name_helm_takes_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    main(["validate", str(MICROK8S), "--release", "a" * 53])  # its Experiment name is too long for Katib
    assert "--release" not in capsys.readouterr().err


def _as_user_without_root_powers(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The command as a user whom file permissions bind (root drops the capabilities that bypass them)."""
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "generator", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions do not apply")
        drop = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=60)


def test_an_unreadable_input_file_is_one_line(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    shutil.copy(MICROK8S, values)
    experiment = tmp_path / "experiment.yaml"
    shutil.copy(KATIB_EXPERIMENT, experiment)
    values.chmod(0)
    experiment.chmod(0)
    unreadable = "cannot be read (permission denied); make it readable, or pass another file"
    for args, path in (
        (["validate", str(values)], values),
        (["render", str(values)], values),
        (["install", str(values)], values),
        (["import", str(experiment)], experiment),
    ):
        proc = _as_user_without_root_powers(args)
        assert (proc.returncode, proc.stderr) == (2, f"{path}: {unreadable}\n"), args
