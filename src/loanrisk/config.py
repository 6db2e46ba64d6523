"""The one settings tree. Only this module reads the environment.

Every value can be set as an environment variable with the ``LOANRISK_`` prefix and
``__`` between nested names, e.g. ``LOANRISK_WAREHOUSE__URL`` or
``LOANRISK_INGEST__CHUNK_SIZE``, or in a ``.env`` file in the working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loanrisk.constants import BUILTIN_PROFILE, DEFAULT_HOME, ENV_PREFIX, MODEL_NAME
from loanrisk.errors import ConfigError


class _Section(BaseModel):
    """A settings section. Values are checked when assigned too: a command-line option
    overrides a setting by assignment, and must meet the same bounds as its variable."""

    model_config = ConfigDict(validate_assignment=True)


class WarehouseSettings(_Section):
    """Where the medallion warehouse lives."""

    url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host:5432/db. "
            "Empty means the embedded SQLite file <home>/warehouse.db."
        ),
    )
    echo_sql: bool = Field(default=False, description="Log every SQL statement (debugging).")


class IngestSettings(_Section):
    """How raw files are streamed into the warehouse."""

    chunk_size: int = Field(
        default=50_000, ge=100, le=2_000_000, description="Rows read, parsed and written at a time."
    )
    encoding: str = Field(default="utf-8", description="Text encoding of CSV input files.")
    source_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Give up on a remote source (http, s3, ...) that does not answer this long "
        "(exit code 75: retry later).",
    )
    max_reject_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Refuse a file (load nothing of it, exit 1, print the most frequent "
        "reasons) when more than this share of its rows would be rejected: usually a "
        "profile that does not fit the file. 1 loads whatever the share.",
    )
    scoring_chunk_size: int = Field(
        default=20_000,
        ge=100,
        le=2_000_000,
        description="Rows scored at a time by 'loanrisk score' (bounds its memory).",
    )


class MlflowSettings(_Section):
    """Tracking and registry (MLflow)."""

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI, e.g. http://mlflow:5000. Empty means the embedded "
        "store sqlite:///<home>/mlflow.db with artifacts in <home>/mlartifacts.",
    )
    registry_uri: str | None = Field(
        default=None, description="Model registry URI; empty means the tracking URI."
    )
    experiment: str = Field(default="loanrisk", description="Experiment for training runs.")
    model_name: str = Field(default=MODEL_NAME, description="Registered model name.")


class TrainingSettings(_Section):
    """How candidates are split, tuned and turned into decisions."""

    candidates: list[str] = Field(
        default=["logistic_regression", "xgboost", "lightgbm"],
        min_length=1,
        description="Model families to compare.",
    )
    trials: int = Field(
        default=4,
        ge=0,
        le=500,
        description="Optuna trials per candidate "
        "(0 or 1 = default parameters only), scored on validation AUC.",
    )
    test_months: int = Field(default=3, ge=1, description="Latest vintage months kept for test.")
    valid_months: int = Field(default=3, ge=1, description="Months before test for validation.")
    cost_missed_default: float = Field(
        default=5.0, gt=0, description="Cost of approving a loan that defaults (relative)."
    )
    cost_declined_good: float = Field(
        default=1.0, gt=0, description="Cost of declining a loan that would have repaid."
    )
    policy: Literal["expected_cost", "approval_rate", "max_pd"] = Field(
        default="expected_cost",
        description="How the PD cut-off is set, on validation: expected_cost (the cut-off "
        "with the lowest cost_missed_default x missed defaults + cost_declined_good x "
        "declined good loans), approval_rate (approve target_approval_rate of applicants) "
        "or max_pd (decline every PD at or above max_pd).",
    )
    target_approval_rate: float = Field(
        default=0.8, gt=0, lt=1, description="Share approved under the approval_rate policy."
    )
    max_pd: float = Field(
        default=0.2, gt=0, lt=1, description="Highest PD approved under the max_pd policy."
    )
    study_storage: str = Field(
        default="",
        description="Where Optuna keeps each tuning study, so that several 'loanrisk train' "
        "processes (Airflow mapped tasks, Kubernetes Jobs) share one search: empty (in "
        "memory, this process only), 'warehouse' (the warehouse's database) or an "
        "SQLAlchemy URL.",
    )
    monotone_constraints: bool = Field(
        default=True,
        description="Train XGBoost and LightGBM with the profile's directions of risk and "
        "neutralise LR inputs whose sign goes against them.",
    )
    use_proxies: bool = Field(
        default=False,
        description="Use the profile's proxy columns (e.g. zip code, state: they stand in "
        "for protected characteristics) as features; the model card then warns.",
    )
    seed: int = Field(default=42, description="Random seed for splits and models.")


class PromotionSettings(_Section):
    """Gates a challenger must pass to become production."""

    min_auc: float = Field(default=0.60, description="Absolute floor for the challenger's AUC.")
    max_ece: float = Field(default=0.05, description="Ceiling for its expected calibration error.")
    auc_tolerance: float = Field(
        default=0.005, ge=0, description="How much lower than the champion's AUC is accepted."
    )
    window_months: int = Field(
        default=3, ge=1, description="Recent labelled vintage months both models are scored on."
    )
    min_approval_rate: float = Field(
        default=0.5, ge=0, le=1, description="Sanity gate: lowest approval rate on the window."
    )
    max_approval_rate: float = Field(
        default=0.95, ge=0, le=1, description="Sanity gate: highest approval rate on the window."
    )
    max_calibration_gap: float = Field(
        default=0.03,
        ge=0,
        description="Sanity gate: largest |mean PD - observed default rate| on the window.",
    )
    min_adverse_impact_ratio: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Fairness gate: lowest approval rate of a group of a protected attribute "
        "relative to the most-approved group (the four-fifths rule).",
    )
    min_group_rows: int = Field(
        default=50, ge=1, description="Groups smaller than this are reported, not judged."
    )
    monotonicity_sample: int = Field(
        default=500,
        ge=0,
        description="Applicants of the window on which each declared direction of risk is "
        "checked (0: no check).",
    )


Scope = Literal["predict", "read", "outcomes"]


class ApiKey(_Section):
    """One API key, stored as the SHA-256 of the key (never the key itself).

    Checked when the settings load, so a mistyped scope or digest stops the service at
    start with the field named, instead of a key that silently can do nothing."""

    name: str = Field(min_length=1, description="Who holds the key (for logs and audit).")
    sha256: SecretStr = Field(description="Hex SHA-256 of the key ('loanrisk apikey' makes one).")
    scopes: list[Scope] = Field(
        default=["predict", "read", "outcomes"],
        min_length=1,
        description="What it may do: predict, read (predictions, model), outcomes.",
    )

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value.get_secret_value()):
            raise ValueError(
                "must be the 64 hex digits of a SHA-256 ('loanrisk apikey' prints one)"
            )
        return value


class ServingSettings(_Section):
    """The scoring service."""

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="Uvicorn worker processes.")
    alias: str = Field(default="production", description="Registry alias the service serves.")
    poll_seconds: float = Field(default=10.0, gt=0, description="How often the alias is checked.")
    max_applications: int = Field(default=100, ge=1, description="Applications per request.")
    max_body_bytes: int = Field(default=1_000_000, ge=1_000, description="Largest request body.")
    auth_enabled: bool = Field(
        default=True, description="Require API keys (turn off only for local experiments)."
    )
    api_keys: list[ApiKey] = Field(default_factory=list, description="Accepted keys (hashed).")
    log_batch_rows: int = Field(default=500, ge=1, description="Prediction rows per insert.")
    log_flush_seconds: float = Field(default=0.2, gt=0, description="Longest wait before insert.")
    log_retry_seconds: float = Field(
        default=2.0, gt=0, description="How often the log retries an unreachable database."
    )
    log_commit_delay_seconds: float = Field(
        default=0.010,
        ge=0,
        le=0.05,
        description=(
            "Longest wait of the prediction log, under load, for more answers to share one "
            "fsync (a lone client never waits)."
        ),
    )
    max_text_chars: int = Field(
        default=200, ge=1, description="Longest text value accepted in an application."
    )
    recent_cache_bytes: int = Field(
        default=16 << 20,
        ge=0,
        description="Memory for answers not yet in the database (GET /v1/predictions/{id}).",
    )
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait for the rest of a request body (408)."
    )
    worker_start_seconds: int = Field(
        default=120,
        ge=5,
        description="How long a worker may take to start or answer the supervisor's health "
        "check before it is replaced (several workers).",
    )


class MonitoringSettings(_Section):
    """Drift and performance monitoring, alert thresholds."""

    window_days: float = Field(default=30.0, gt=0, description="Default window of predictions.")
    max_rows: int = Field(default=100_000, ge=100, description="Most recent rows compared.")
    drift_share_alert: float = Field(
        default=0.3, ge=0, le=1, description="Alert when this share of model inputs drifted."
    )
    score_psi_alert: float = Field(default=0.25, ge=0, description="Alert above this PD PSI.")
    min_auc: float = Field(
        default=0.6, ge=0, le=1, description="Alert when realised AUC falls below."
    )
    max_default_rate_gap: float = Field(
        default=0.05,
        ge=0,
        description="Alert when observed and predicted default rates differ more.",
    )
    min_outcomes: int = Field(
        default=200, ge=1, description="Outcomes needed for realised metrics."
    )
    webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible webhook for alerts (JSON with 'text')."
    )


class DataSettings(_Section):
    """Which dataset the warehouse holds."""

    profile: str = Field(
        default=BUILTIN_PROFILE,
        description="Built-in profile name or path to a profile YAML file.",
    )
    landing_dir: Path | None = Field(
        default=None, description="Folder of raw files to ingest; default <home>/landing."
    )
    applications_dir: Path | None = Field(
        default=None,
        description="Folder of new applications the pipeline scores; default <home>/applications.",
    )

    @property
    def profile_chosen(self) -> bool:
        """Whether the profile was given (an option, the environment) rather than left at
        its default: a warehouse otherwise uses the profile it remembers."""
        return "profile" in self.model_fields_set


class SparkSettings(_Section):
    """The Spark engine of ``loanrisk score --engine spark`` (the ``spark`` extra)."""

    master: str = Field(
        default="local[*]",
        description="Spark master: local[N], spark://host:7077, yarn, k8s://https://host.",
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        description='Extra Spark settings as JSON, e.g. {"spark.executor.memory": "4g"}.',
    )


class Settings(BaseSettings):
    """Effective configuration of one loanrisk installation."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        validate_assignment=True,
    )

    home: Path = Field(
        default=Path(DEFAULT_HOME),
        description="Folder for the embedded warehouse, MLflow store, artifacts and reports.",
    )
    log_level: str = Field(default="WARNING", description="Python logging level.")
    warehouse: WarehouseSettings = WarehouseSettings()
    ingest: IngestSettings = IngestSettings()
    data: DataSettings = DataSettings()
    mlflow: MlflowSettings = MlflowSettings()
    training: TrainingSettings = TrainingSettings()
    promotion: PromotionSettings = PromotionSettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    spark: SparkSettings = SparkSettings()

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
    def tracking_uri(self) -> str:
        """MLflow tracking URI (the embedded SQLite store unless set)."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Where a new experiment keeps artifacts: under home for the embedded store."""
        if self.mlflow.tracking_uri:
            return None
        return (self.home / "mlartifacts").resolve().as_uri()

    @property
    def spool_dir(self) -> Path:
        """Where the service keeps its write-ahead log of answered predictions."""
        return self.home / "spool"

    @property
    def landing_dir(self) -> Path:
        """Folder the pipeline ingests new raw files from."""
        return self.data.landing_dir or self.home / "landing"

    @property
    def applications_dir(self) -> Path:
        """Folder the pipeline scores new application files from."""
        return self.data.applications_dir or self.home / "applications"

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
        data["data"]["applications_dir"] = str(self.applications_dir)
        data["mlflow"]["tracking_uri"] = mask_url(self.tracking_uri)
        return data


def mask_url(url: str) -> str:
    """A URL with its password replaced by ``***`` (database, HTTP or any other scheme)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def get_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, ``.env``, the environment, then explicit overrides."""
    try:
        settings = Settings()
        if overrides:
            settings = Settings.model_validate(
                settings.model_dump(exclude_unset=True)
                | {k: v for k, v in overrides.items() if v is not None}
            )
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(e) for e in exc.errors(include_url=False))
        raise ConfigError(f"invalid settings: {problems}") from exc
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    return settings


def _setting_problem(error: Any) -> str:
    """One setting's problem on one line, with the environment variable that sets it."""
    loc = [str(part) for part in error["loc"]]
    named = [part for part in error["loc"][:2] if isinstance(part, str)]
    env = ENV_PREFIX + "__".join(part.upper() for part in named)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc)} ({env}): {message}"
