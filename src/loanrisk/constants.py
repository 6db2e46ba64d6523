"""Names that everything shares: tables, model names, aliases, the environment prefix."""

from enum import StrEnum

ENV_PREFIX = "LOANRISK_"
DEFAULT_HOME = ".loanrisk"
BUILTIN_PROFILE = "lendingclub"


class Table(StrEnum):
    """Warehouse tables (DESIGN.md, "Names that everything shares")."""

    WAREHOUSE_META = "warehouse_meta"
    INGESTION_BATCHES = "ingestion_batches"
    BRONZE = "bronze_loans"
    SILVER = "silver_loans"
    REJECTS = "silver_rejects"
    GOLD = "gold_loan_features"
    PREDICTIONS = "predictions"
    OUTCOMES = "outcomes"
    SCORING_RUNS = "scoring_runs"
    MONITORING_RUNS = "monitoring_runs"


# Version tag written "pending" at registration and "complete" once @staging points at the
# version: a train killed in between leaves a version that --if-new-data does not count.
REGISTRATION_TAG = "registration"


class Alias(StrEnum):
    """Registry aliases; never "latest"."""

    STAGING = "staging"
    PRODUCTION = "production"


MODEL_NAME = "loan_default_model"

# Columns the warehouse adds to silver and gold, whatever the profile.
LOAN_ID = "loan_id"
VINTAGE = "vintage"
LABEL = "label"
TARGET_RAW = "target_raw"
BATCH_ID = "batch_id"
SOURCE_ROW = "source_row"
# A raw frame column set by the reader on rows whose field count is not the header's.
ROW_PROBLEM = "_row_problem"


class Label(StrEnum):
    """What a raw target value means."""

    BAD = "bad"
    GOOD = "good"
    UNKNOWN = "unknown"
