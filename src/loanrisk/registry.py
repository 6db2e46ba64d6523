"""The only module that talks to the MLflow model registry.

Versions are addressed by number or alias (``staging``, ``production``), never "latest".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
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


class Registry:
    """The model registry of one run: one MLflow client, made once by the entry point (a
    command, the pipeline, the service) and passed to every stage.

    MLflow's logging and loading functions (``mlflow.start_run``, ``pyfunc.log_model``,
    ``pyfunc.load_model``) read the tracking URI from the process; it is set here, once,
    from the same settings, so the client and those functions always agree.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.mlflow.tracking_uri:
            settings.ensure_home()
        self.settings = settings
        self.name = settings.mlflow.model_name
        self.tracking_uri = settings.tracking_uri
        self.registry_uri = settings.mlflow.registry_uri or settings.tracking_uri
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        if not MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.defined:
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)  # loanrisk draws its own progress
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def register(
        self,
        *,
        model_uri: str,
        run_id: str,
        model_id: str | None,
        tags: dict[str, str],
        description: str | None = None,
    ) -> str:
        """Register the logged model and point ``staging`` at exactly that version."""
        client, name = self.client, self.name
        try:
            try:
                client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = client.create_model_version(
                name,
                model_uri,
                run_id=run_id,
                model_id=model_id,
                tags=tags | {REGISTRATION_TAG: "pending"},
                description=description,
            ).version
            client.set_registered_model_alias(name, Alias.STAGING, version)
            client.set_model_version_tag(name, version, REGISTRATION_TAG, "complete")
        except MlflowException as exc:
            raise _failure(exc, f"cannot register {model_uri} as {name}") from exc
        return str(version)

    def versions(self) -> list[VersionInfo]:
        """All versions of the model, newest first."""
        try:
            found = self.client.search_model_versions(f"name = '{self.name}'")
            aliases = self.client.get_registered_model(self.name).aliases if found else {}
        except MlflowException as exc:
            raise _failure(exc, f"cannot list versions of {self.name}") from exc
        by_version: dict[str, list[str]] = {}
        for alias, version in (aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        infos = [_info(v, by_version.get(str(v.version), [])) for v in found]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def by_alias(self, alias: str) -> VersionInfo | None:
        """The version an alias points at, or None when the alias is not set."""
        try:
            return _info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException as exc:
            if exc.error_code in _NOT_FOUND:
                return None
            raise _failure(exc, f"cannot read @{alias} of {self.name}") from exc

    def get(self, version: str) -> VersionInfo:
        try:
            return _info(self.client.get_model_version(self.name, version))
        except MlflowException as exc:
            raise _failure(exc, f"{self.name} has no version {version}") from exc

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def model_uri(self, version: str) -> str:
        return f"models:/{self.name}/{version}"

    def load(self, version: str) -> Any:
        """The version's pyfunc model."""
        try:
            return mlflow.pyfunc.load_model(self.model_uri(version))
        except MlflowException as exc:
            raise _failure(exc, f"cannot load version {version}") from exc

    def load_bundle(self, version: str) -> Any:
        """The version's ``ScoringBundle`` (everything from raw fields to the decision)."""
        return self.load(version).unwrap_python_model().bundle

    def experiment_id(self, name: str, artifact_location: str | None) -> str:
        """The id of experiment ``name``, created on first use."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=artifact_location))


def _info(version: ModelVersion, aliases: list[str] | None = None) -> VersionInfo:
    return VersionInfo(
        version=str(version.version),
        aliases=sorted(aliases if aliases is not None else (version.aliases or [])),
        run_id=version.run_id,
        created_at=int(version.creation_timestamp or 0),
        tags=dict(version.tags or {}),
    )
