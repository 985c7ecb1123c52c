"""The server image's Dockerfile against the project: the same pins, the files it copies exist and
are all the server needs, a numeric non-root user. (No Docker engine here: the build itself is not run.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from .conftest import ROOT, server_image_env

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
    assert sources == ["images/contract/katib_nas_contract", "images/server/katib_nas_server"]
    assert all((ROOT / source).exists() for source in sources)
    assert [line for line in lines if line.startswith("USER")] == ["USER 1000"]
    assert lines[-1] == 'CMD ["python", "-m", "katib_nas_server", "serve", "--port=8080"]'


def test_the_server_and_the_contract_import_without_any_training_framework() -> None:
    """Every module of the two packages the image copies imports with torch, tensorflow, keras and onnx
    blocked and no trainer package on the path, as in the image."""
    packages = {"katib_nas_contract": "contract", "katib_nas_server": "server"}
    modules = [
        f"{package}.{source.stem}"
        for package, folder in packages.items()
        for source in sorted((ROOT / "images" / folder / package).glob("*.py"))
        if source.stem != "__main__"
    ]
    script = (
        "import importlib, sys\n"
        "sys.modules['katib_nas_trainer'] = sys.modules['katib_nas_keras'] = None\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'torch', 'tensorflow', 'keras', 'onnx'}, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], env=server_image_env(), check=True, timeout=120)
