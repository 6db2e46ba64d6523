"""Prometheus metrics of the service.

One worker: each app has its own registry. Several workers (``loanrisk serve --workers N``
sets ``PROMETHEUS_MULTIPROC_DIR``): every process writes its values to files in that
folder and ``/metrics``, whichever worker answers, reports all workers together: counters
and histograms summed, per-worker gauges summed or taken at their maximum/minimum.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        # In multiprocess mode the values live in files; the registry is built per scrape.
        self.registry = None if self.multiprocess else CollectorRegistry()

        def gauge(name: str, text: str, mode: str, labels: tuple[str, ...] = ()) -> Gauge:
            extra: dict[str, Any] = {"multiprocess_mode": mode} if self.multiprocess else {}
            return Gauge(name, text, labels, registry=self.registry, **extra)

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
        self.model_info = gauge(
            "loanrisk_model_info",
            "The served model version (value 1)",
            "livemax",
            ("name", "version", "alias", "run_id"),
        )
        self.model_created = gauge(
            "loanrisk_model_created_timestamp_seconds",
            "When the served model version was trained and registered (Unix time)",
            "livemax",
        )
        self.queue_depth = gauge(
            "loanrisk_prediction_log_queue_depth",
            "Answered prediction rows on local disk (write-ahead log), not yet in the database",
            "livesum",
        )
        self.spooled = gauge(
            "loanrisk_prediction_log_spooled_rows_total",
            "Rows answered while the database was unreachable (they waited on local disk)",
            "sum",
        )
        self.dead_lettered = gauge(
            "loanrisk_prediction_log_dead_letter_rows_total",
            "Rows the database refused; kept with the reason in the dead-letter file",
            "sum",
        )
        self.writer_up = gauge(
            "loanrisk_prediction_log_writer_up",
            "1 when the prediction log's threads run and make progress",
            "livemin",
        )
        self.fsyncs = gauge(
            "loanrisk_prediction_log_fsyncs_total",
            "Group commits of the write-ahead log (one fsync covers every waiting request)",
            "sum",
        )
        self.fsync_seconds = gauge(
            "loanrisk_prediction_log_fsync_seconds_total",
            "Time spent writing and fsyncing the write-ahead log",
            "sum",
        )
        # Every answer waits for its group commit: a slow disk shows here first (and in
        # the answers' tail latency).
        self.fsync_duration = Histogram(
            "loanrisk_prediction_log_fsync_duration_seconds",
            "Each group commit of the write-ahead log: its write and fsync",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self.failed_writes = gauge(
            "loanrisk_prediction_log_failed_writes_total",
            "Database writes of the prediction log that failed",
            "sum",
        )
        self.written = gauge(
            "loanrisk_prediction_log_written_rows_total",
            "Prediction rows written to the database",
            "sum",
        )
        self.drifted_share = gauge(
            "loanrisk_monitoring_drifted_share",
            "Share of model inputs drifted in the latest monitoring run",
            "livemax",
        )
        self.score_psi = gauge(
            "loanrisk_monitoring_score_psi",
            "PSI of the PD score in the latest monitoring run",
            "livemax",
        )
        self.realised_auc = gauge(
            "loanrisk_monitoring_realised_auc",
            "Realised AUC in the latest monitoring run (when known)",
            "livemax",
        )
        self.monitoring_last_run = gauge(
            "loanrisk_monitoring_last_run_timestamp_seconds",
            "When the latest monitoring run finished (Unix time)",
            "livemax",
        )
        self.database_up = gauge(
            "loanrisk_prediction_log_database_up",
            "1 when the prediction log reaches the database",
            "livemin",
        )

    def exposition(self) -> bytes:
        """The text format of every metric (of all workers in multiprocess mode)."""
        if self.registry is not None:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))
