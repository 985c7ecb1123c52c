"""The server image's Dockerfile against the project: the same pins, the files it copies exist and
are all the server needs, a numeric non-root user. (No Docker engine here: the build itself is not run.)"""

from __future__ import annotations

import re
import tomllib

from .conftest import ROOT

DOCKERFILE = ROOT / "images" / "server" / "Dockerfile"


def _instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_pip_pins_match_the_server_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    installs = [line for line in _instructions() if line.startswith("RUN pip install")]
    assert len(installs) == 1
    packages = set(installs[0].split()[3:])
    assert {p.replace(">=2.0", "") for p in extra} <= packages  # numpy is left unpinned in both
    assert packages - set(extra) - {"numpy"} == {"kubernetes==37.0.2"}
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "kubernetes==37.0.2" in base


def test_copied_sources_exist_and_run_as_a_numeric_non_root_user() -> None:
    lines = _instructions()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY")]
    sources = [source for group in copies for source in group]
    assert sources == [
        "images/server/katib_nas_server",
        "images/trainer/katib_nas_trainer/__init__.py",
        "images/trainer/katib_nas_trainer/datasets.py",
        "images/trainer/katib_nas_trainer/files.py",
    ]
    assert all((ROOT / source).exists() for source in sources)
    assert [line for line in lines if line.startswith("USER")] == ["USER 1000"]
    assert lines[-1] == 'CMD ["python", "-m", "katib_nas_server", "serve", "--port=8080"]'


def test_the_server_package_imports_only_the_trainers_torch_free_modules() -> None:
    imports = set()
    for source in (ROOT / "images" / "server" / "katib_nas_server").glob("*.py"):
        imports |= set(re.findall(r"^from (katib_nas_trainer\S*) import", source.read_text(), re.MULTILINE))
    assert imports == {"katib_nas_trainer.datasets", "katib_nas_trainer.files"}
