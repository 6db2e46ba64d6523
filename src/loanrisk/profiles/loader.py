"""Load a profile by built-in name or from a YAML file, with errors that point at the mistake."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from loanrisk.errors import ProfileError
from loanrisk.profiles.model import Profile, Role


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with loanrisk."""
    folder = resources.files("loanrisk.profiles")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name (``lendingclub``) or a profile YAML file by path."""
    text, origin = _read(str(name_or_path))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"profile {origin} must be a YAML mapping, got {type(data).__name__}")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ProfileError(
            f"profile {origin} has {exc.error_count()} problem(s): {problems}"
        ) from exc


def profile_fingerprint(profile: Profile) -> str:
    """A short hash of what shapes the warehouse tables (columns and derived features)."""
    shape = {
        # A proxy is stored as a feature is (training decides whether to use it).
        "columns": {
            n: [c.parser.value, "feature" if c.role is Role.PROXY else c.role.value]
            for n, c in profile.columns.items()
        },
        "derived": sorted(profile.derived),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def _read(name_or_path: str) -> tuple[str, str]:
    if name_or_path in builtin_profiles():
        resource = resources.files("loanrisk.profiles") / f"{name_or_path}.yaml"
        return resource.read_text(encoding="utf-8"), f"'{name_or_path}' (built in)"
    path = Path(name_or_path)
    if not path.exists():
        raise ProfileError(
            f"profile {name_or_path!r} is neither a built-in profile "
            f"({', '.join(builtin_profiles())}) nor an existing file"
        )
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc}") from exc
