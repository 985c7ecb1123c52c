"""The chart passes the chart community's own tools: `ct lint` (helm lint of every ci/ values file,
yamllint, Chart.yaml schema, and helm-unittest as an additional command) and helm-docs."""

from __future__ import annotations

import sys

from .conftest import CHART, ROOT, run, tool


def test_ct_lint_and_helm_unittest() -> None:
    proc = run([tool("ct"), "lint", "--config", str(ROOT / "ci" / "ct.yaml"), "--charts", str(CHART)], check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "All charts linted successfully" in output
    # The additional command ran every unittest suite in the chart, strictly, and all passed.
    suites = len(list((CHART / "tests").glob("*_test.yaml")))
    assert f"Test Suites: {suites} passed, {suites} total" in output


def test_values_reference_in_readme_is_generated() -> None:
    proc = run(
        [
            tool("helm-docs"),
            "--chart-search-root",
            str(ROOT / "charts"),
            "--template-files",
            "README.md.gotmpl",
            "--dry-run",
        ]
    )
    assert proc.stdout.strip() == (CHART / "README.md").read_text().strip(), (
        "charts/katib-nas/README.md is stale: run `make docs`"
    )


def test_values_reference_in_the_top_level_readme_is_current() -> None:
    proc = run([sys.executable, str(ROOT / "ci" / "readme_values.py"), "--check"], check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| experiment.parallelTrialCount | int | `2` |" in (ROOT / "README.md").read_text()
