"""Prometheus metrics of one service process (each app gets its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loanrisk_http_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loanrisk_http_request_duration_seconds",
            "Request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "loanrisk_predictions_total",
            "Answered applications",
            ["decision", "grade"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "loanrisk_model_info",
            "The served model version (value 1)",
            ["name", "version", "alias", "run_id"],
            registry=self.registry,
        )
        self.model_created = Gauge(
            "loanrisk_model_created_timestamp_seconds",
            "When the served model version was trained and registered (Unix time)",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "loanrisk_prediction_log_queue_depth",
            "Prediction rows waiting to be written",
            registry=self.registry,
        )
        self.spooled = Gauge(
            "loanrisk_prediction_log_spooled_rows_total",
            "Rows written to the local spool while the database was down",
            registry=self.registry,
        )
        self.failed_writes = Gauge(
            "loanrisk_prediction_log_failed_writes_total",
            "Database writes of the prediction log that failed",
            registry=self.registry,
        )
        self.written = Gauge(
            "loanrisk_prediction_log_written_rows_total",
            "Prediction rows written to the database",
            registry=self.registry,
        )
        self.drifted_share = Gauge(
            "loanrisk_monitoring_drifted_share",
            "Share of model inputs drifted in the latest monitoring run",
            registry=self.registry,
        )
        self.score_psi = Gauge(
            "loanrisk_monitoring_score_psi",
            "PSI of the PD score in the latest monitoring run",
            registry=self.registry,
        )
        self.realised_auc = Gauge(
            "loanrisk_monitoring_realised_auc",
            "Realised AUC in the latest monitoring run (when known)",
            registry=self.registry,
        )
        self.monitoring_last_run = Gauge(
            "loanrisk_monitoring_last_run_timestamp_seconds",
            "When the latest monitoring run finished (Unix time)",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "loanrisk_prediction_log_database_up",
            "1 when the prediction log reaches the database",
            registry=self.registry,
        )
