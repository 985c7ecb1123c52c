"""NAS trial arguments reach the trainer whole. Katib's StdOut, File and TensorFlowEvent collectors
run the trial command joined into one `sh -c` string; an ENAS architecture such as [[1], [0, 1]]
or its nn_config would be split and globbed there. Through Katib's own trial-template substitution
and pod mutation (ci/katibcheck), then the real `sh -c` Katib's wrapper runs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.local.plan import _shell_words

from .conftest import CHART, by_kind, helm_template
from .katib_harness import mutate_pod

NAS_VALUES = yaml.safe_load((CHART / "ci" / "enable-nas-values.yaml").read_text())
# What Katib's ENAS suggestion service hands the trial (pkg/suggestion/v1beta1/nas/enas/service.py:
# json.dumps of the architecture and of the search-space description, double quotes made single).
ARCHITECTURE = "[[1], [0, 1], [2, 0, 1], [1, 1, 0, 0]]"
NN_CONFIG = (
    "{'num_layers': 4, 'input_sizes': [28, 28, 1], 'output_sizes': [10], 'embedding': {'1': {'opt_id': 1, "
    "'opt_type': 'convolution', 'opt_params': {'filter_size': '3', 'num_filter': '32'}}}}"
)
ASSIGNMENTS = [{"name": "architecture", "value": ARCHITECTURE}, {"name": "nn_config", "value": NN_CONFIG}]
ARGV_DUMP = (
    "import json, pathlib, sys\npathlib.Path(__file__).with_suffix('.json').write_text(json.dumps(sys.argv[1:]))\n"
)


def _run_wrapped(container: dict[str, Any], katib_dir: Path, workdir: Path) -> list[str]:
    """Run the mutated trainer container's command as its image would, with Katib's metrics
    directory moved to `katib_dir`; return the argv the trainer program got."""
    command = [c.replace("/var/log/katib", str(katib_dir)) for c in container["command"] + container["args"]]
    assert command[:2] == ["sh", "-c"], command
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr + (katib_dir / "metrics.log").read_text()
    argv: list[str] = json.loads((workdir / "argv.json").read_text())
    return argv


@pytest.mark.parametrize(
    "args",
    [
        NAS_VALUES["trial"]["args"],  # as the chart's NAS example writes them
        [
            '--architecture="${trialParameters.neuralNetworkArchitecture}"',  # as Katib's ENAS example does
            '--nn_config="${trialParameters.neuralNetworkConfig}"',
        ],
    ],  # fmt: skip
    ids=["unquoted", "katib-quoted"],
)
def test_nas_arguments_survive_katibs_shell_wrapper(tmp_path: Path, args: list[str]) -> None:
    values = copy.deepcopy(NAS_VALUES)
    # The trainer is a program that writes the argv it got; everything else is the NAS example.
    (tmp_path / "argv.py").write_text(ARGV_DUMP)
    values["trial"]["command"] = [sys.executable, str(tmp_path / "argv.py")]
    values["trial"]["args"] = args
    (experiment,) = by_kind(helm_template(values=values), "Experiment")
    pod = mutate_pod(experiment, assignments=ASSIGNMENTS)
    (trainer,) = [c for c in pod["spec"]["containers"] if c["name"] == "trainer"]
    # Globbing trap: files a bracket pattern such as [[1], would match if the shell saw it bare.
    for name in ("[1],", "1],", "0"):
        (tmp_path / name).write_text("")
    (tmp_path / "katib").mkdir()
    argv = _run_wrapped(trainer, tmp_path / "katib", tmp_path)
    assert argv == [f"--architecture={ARCHITECTURE}", f"--nn_config={NN_CONFIG}"]


def test_the_local_runner_reads_arguments_as_the_wrapper_does() -> None:
    """`katib-nas run --local` takes its argv from the same rendered template: one shell word each."""
    quoted = '"--architecture=[[1], [0, 1]]"'
    assert _shell_words(quoted) == ["--architecture=[[1], [0, 1]]"]
    assert _shell_words('--x="a b"') == ["--x=a b"]
    assert _shell_words('--x="unbalanced') == ['--x="unbalanced']
