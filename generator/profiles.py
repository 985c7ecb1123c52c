"""Loading cluster profiles: the built-in ones shipped with the package, or a user's YAML file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import ProfileError
from .models import ClusterProfile
from .yamlio import format_validation_error, parse_yaml, yaml_error_text

BUILTIN_PROFILES = ("microk8s", "k3s-gpu")
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


def load_profile(ref: str, relative_to: Path | None = None) -> ClusterProfile:
    """Resolve `ref` as a built-in profile name, else as a file path (relative to the values file)."""
    if ref in BUILTIN_PROFILES:
        text = (PROFILE_DIR / f"{ref}.yaml").read_text(encoding="utf-8")
        source = f"profile {ref}"
    else:
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError):  # missing, a directory, a name the OS refuses, not UTF-8
            raise ProfileError(
                f"profile {ref!r} is neither a built-in profile ({', '.join(BUILTIN_PROFILES)}) nor a readable "
                f"UTF-8 file (looked for {path}); write one with `katib-nas profile detect -o {ref}`"
            ) from None
        source = str(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: {yaml_error_text(exc)}") from None
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError("\n".join(format_validation_error(source, exc))) from None


def dump_profile(profile: ClusterProfile) -> str:
    return yaml.safe_dump(profile.model_dump(mode="json", exclude_defaults=False), sort_keys=False)
