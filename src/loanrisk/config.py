"""The one settings tree. Only this module reads the environment.

Every value can be set as an environment variable with the ``LOANRISK_`` prefix and
``__`` between nested names, e.g. ``LOANRISK_WAREHOUSE__URL`` or
``LOANRISK_INGEST__CHUNK_SIZE``, or in a ``.env`` file in the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from loanrisk.constants import BUILTIN_PROFILE, DEFAULT_HOME, ENV_PREFIX
from loanrisk.errors import ConfigError


class WarehouseSettings(BaseModel):
    """Where the medallion warehouse lives."""

    url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host:5432/db. "
            "Empty means the embedded SQLite file <home>/warehouse.db."
        ),
    )
    echo_sql: bool = Field(default=False, description="Log every SQL statement (debugging).")


class IngestSettings(BaseModel):
    """How raw files are streamed into the warehouse."""

    chunk_size: int = Field(
        default=50_000, ge=100, le=2_000_000, description="Rows read, parsed and written at a time."
    )
    encoding: str = Field(default="utf-8", description="Text encoding of CSV input files.")


class DataSettings(BaseModel):
    """Which dataset the warehouse holds."""

    profile: str = Field(
        default=BUILTIN_PROFILE,
        description="Built-in profile name or path to a profile YAML file.",
    )
    landing_dir: Path | None = Field(
        default=None, description="Folder of raw files to ingest; default <home>/landing."
    )


class Settings(BaseSettings):
    """Effective configuration of one loanrisk installation."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    home: Path = Field(
        default=Path(DEFAULT_HOME),
        description="Folder for the embedded warehouse, MLflow store, artifacts and reports.",
    )
    log_level: str = Field(default="WARNING", description="Python logging level.")
    warehouse: WarehouseSettings = WarehouseSettings()
    ingest: IngestSettings = IngestSettings()
    data: DataSettings = DataSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @property
    def warehouse_url(self) -> str:
        """The SQLAlchemy URL of the warehouse (the embedded SQLite file unless set)."""
        if self.warehouse.url is not None and self.warehouse.url.get_secret_value():
            return self.warehouse.url.get_secret_value()
        return f"sqlite:///{(self.home / 'warehouse.db').resolve()}"

    @property
    def landing_dir(self) -> Path:
        """Folder the pipeline ingests new raw files from."""
        return self.data.landing_dir or self.home / "landing"

    def ensure_home(self) -> Path:
        """Create the home folder if needed and return it."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create home folder {self.home}: {exc.strerror}") from exc
        return self.home

    def public_dict(self) -> dict[str, Any]:
        """Effective settings as plain data, secrets masked (passwords in URLs too)."""
        data = self.model_dump(mode="json")
        data["warehouse"]["url"] = mask_url(self.warehouse_url)
        data["home"] = str(self.home.resolve())
        data["data"]["landing_dir"] = str(self.landing_dir)
        return data


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise ConfigError(f"warehouse URL is not a valid SQLAlchemy URL: {exc}") from exc


def get_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, ``.env``, the environment, then explicit overrides."""
    try:
        settings = Settings()
        if overrides:
            settings = Settings.model_validate(
                settings.model_dump() | {k: v for k, v in overrides.items() if v is not None}
            )
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    return settings
