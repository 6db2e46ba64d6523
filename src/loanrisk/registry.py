"""The only module that talks to the MLflow model registry.

Versions are addressed by number or alias (``staging``, ``production``), never "latest".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from loanrisk.config import Settings
from loanrisk.constants import REGISTRATION_TAG, Alias
from loanrisk.errors import LoanriskError, UnreachableError


class RegistryError(LoanriskError):
    """The registry lacks the version or alias asked for, or refused the operation."""


_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish")


def unreachable(exc: MlflowException) -> bool:
    """Whether MLflow failed because its tracking server did not answer (worth a retry)."""
    text = str(exc)
    return any(marker in text for marker in _UNREACHABLE)


def _failure(exc: MlflowException, doing: str) -> LoanriskError:
    """UnreachableError when the tracking server did not answer (retry), else RegistryError."""
    if unreachable(exc):
        return UnreachableError(f"{doing}: the MLflow server did not answer ({str(exc)[:300]})")
    return RegistryError(f"{doing}: {exc.message}")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version with its aliases and tags."""

    version: str
    aliases: list[str]
    run_id: str | None
    created_at: int
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Registered to the end (versions older than the tag count as complete)."""
        return self.tags.get(REGISTRATION_TAG, "complete") == "complete"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "tags": self.tags,
        }


def connect(settings: Settings) -> MlflowClient:
    """A client for the configured tracking and registry URIs (also set for mlflow.*)."""
    if not settings.mlflow.tracking_uri:
        settings.ensure_home()
    mlflow.set_tracking_uri(settings.tracking_uri)
    registry_uri = settings.mlflow.registry_uri or settings.tracking_uri
    mlflow.set_registry_uri(registry_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=registry_uri)


def register(settings: Settings, *, model_uri: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` and point ``staging`` at exactly that version."""
    client = connect(settings)
    name = settings.mlflow.model_name
    try:
        version = mlflow.register_model(
            model_uri, name, tags=tags | {REGISTRATION_TAG: "pending"}
        ).version
        client.set_registered_model_alias(name, Alias.STAGING, version)
        client.set_model_version_tag(name, version, REGISTRATION_TAG, "complete")
    except MlflowException as exc:
        raise _failure(exc, f"cannot register {model_uri} as {name}") from exc
    return str(version)


def versions(settings: Settings) -> list[VersionInfo]:
    """All versions of the model, newest first."""
    client = connect(settings)
    name = settings.mlflow.model_name
    try:
        found = client.search_model_versions(f"name = '{name}'")
        aliases = client.get_registered_model(name).aliases if found else {}
    except MlflowException as exc:
        raise _failure(exc, f"cannot list versions of {name}") from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in (aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    infos = [_info(v, by_version.get(str(v.version), [])) for v in found]
    return sorted(infos, key=lambda v: int(v.version), reverse=True)


def by_alias(settings: Settings, alias: str) -> VersionInfo | None:
    """The version an alias points at, or None when the alias is not set."""
    client = connect(settings)
    try:
        return _info(client.get_model_version_by_alias(settings.mlflow.model_name, alias))
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise _failure(exc, f"cannot read @{alias} of {settings.mlflow.model_name}") from exc


def get(settings: Settings, version: str) -> VersionInfo:
    client = connect(settings)
    try:
        return _info(client.get_model_version(settings.mlflow.model_name, version))
    except MlflowException as exc:
        raise _failure(exc, f"{settings.mlflow.model_name} has no version {version}") from exc


def set_alias(settings: Settings, alias: str, version: str) -> None:
    connect(settings).set_registered_model_alias(settings.mlflow.model_name, alias, version)


def tag(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = connect(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.mlflow.model_name, version, key, value)


def model_uri(settings: Settings, version: str) -> str:
    return f"models:/{settings.mlflow.model_name}/{version}"


def load(settings: Settings, version: str) -> Any:
    """The version's pyfunc model."""
    connect(settings)
    try:
        return mlflow.pyfunc.load_model(model_uri(settings, version))
    except MlflowException as exc:
        raise _failure(exc, f"cannot load version {version}") from exc


def load_bundle(settings: Settings, version: str) -> Any:
    """The version's ``ScoringBundle`` (everything from raw fields to the decision)."""
    return load(settings, version).unwrap_python_model().bundle


def _info(version: ModelVersion, aliases: list[str] | None = None) -> VersionInfo:
    return VersionInfo(
        version=str(version.version),
        aliases=sorted(aliases if aliases is not None else (version.aliases or [])),
        run_id=version.run_id,
        created_at=int(version.creation_timestamp or 0),
        tags=dict(version.tags or {}),
    )
