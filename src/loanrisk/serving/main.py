"""Entry points of the service: ``run_server`` (what ``loanrisk serve`` calls) and
``app_factory`` (what each uvicorn worker calls; its settings come from the environment)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile

from loanrisk.config import Settings, get_settings
from loanrisk.logs import configure_logging
from loanrisk.serving.app import create_app
from loanrisk.serving.deps import Service
from loanrisk.serving.fastlane import FastLane
from loanrisk.serving.metrics import MULTIPROCESS_ENV

log = logging.getLogger(__name__)


def app_factory() -> FastLane:
    """The service: the FastAPI app behind the fast lane for plainly valid predictions."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return FastLane(create_app(settings, on_ready=announce))


def announce(service: Service, seconds: float) -> None:
    """One line on stderr once this process can answer, beside uvicorn's start-up lines
    (which say only that the port is open): the model it serves, or why /ready is 503."""
    serving = service.settings.serving
    where = f"http://{serving.host}:{serving.port}"
    model = service.models.current
    if model is None:
        line = (
            f"not ready (pid {os.getpid()}): {service.models.problem}; /ready answers 503 "
            f"until it is fixed (checked every {serving.poll_seconds:g} s) - {where}"
        )
    else:
        line = (
            f"ready (pid {os.getpid()}): {model.name} version {model.version} "
            f"(@{model.alias}) loaded in {seconds:.1f} s; answering on {where} (docs at /docs)"
        )
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_server(settings: Settings) -> None:
    """Serve until stopped: uvicorn with ``settings.serving.workers`` worker processes.

    Workers are new processes that build their settings from the environment, so the
    home folder, profile and log level chosen on the command line are passed down there.
    With several workers, /metrics reports all of them through files in a fresh folder.
    """
    import uvicorn

    serving = settings.serving
    os.environ["LOANRISK_HOME"] = str(settings.home.resolve())
    if settings.data.profile_chosen:  # else each worker reads the warehouse's own
        os.environ["LOANRISK_DATA__PROFILE"] = settings.data.profile
    os.environ["LOANRISK_LOG_LEVEL"] = settings.log_level
    metrics_dir = None
    if serving.workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="loanrisk-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    try:
        uvicorn.run(
            "loanrisk.serving.main:app_factory",
            factory=True,
            host=serving.host,
            port=serving.port,
            workers=serving.workers,
            # A worker loading its model on a busy machine is slow, not hung: uvicorn's
            # 5 s default killed such workers over and over.
            timeout_worker_healthcheck=serving.worker_start_seconds,
            # info: uvicorn reports a worker that died or was replaced only at this level.
            log_level="info" if serving.workers > 1 else "warning",
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
