"""DAG integrity check, run with Airflow's own interpreter (``airflow/.venv/bin/python``).

Usage: ``airflow/.venv/bin/python airflow/check_dags.py [DAGS_FOLDER]``.

Parses every DAG file the way the scheduler does, with the network blocked and the
metadata database pointing nowhere, and prints one JSON document: the DAGs found, the
import errors, the parse time per file, and whether anything tried to connect, open the
database or run ``loanrisk`` while parsing. ``tests/integration/test_airflow.py`` asserts
on it; ``make airflow-check`` prints it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

DAGS = Path(__file__).resolve().parent / "dags"
attempts: list[str] = []


def _refuse(kind: str):  # type: ignore[no-untyped-def]
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(f"{kind} {args[1:2] or args[:1]}")
        raise OSError(f"no {kind} while parsing DAGs")

    return refuse


def main() -> None:
    dags = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DAGS
    scratch = Path(tempfile.mkdtemp(prefix="dagcheck-"))
    marker = scratch / "loanrisk-was-run"
    fake = scratch / "loanrisk"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    # Any use of the metadata database fails: its folder does not exist.
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{scratch}/missing/airflow.db"
    os.environ["AIRFLOW_HOME"] = str(scratch / "home")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    os.environ["LOANRISK_BIN"] = str(fake)

    # Airflow logs to stdout; keep stdout for the report alone.
    report_stream, sys.stdout = sys.stdout, sys.stderr
    # As the scheduler and DAG processor do: the DAGs folder is importable (loanrisk_cli).
    sys.path.insert(0, str(dags))
    from airflow.dag_processing.dagbag import DagBag

    socket.socket.connect = _refuse("network connection")  # type: ignore[method-assign]
    socket.getaddrinfo = _refuse("DNS lookup")  # type: ignore[assignment]
    import sqlite3

    real_connect = sqlite3.connect

    def no_database(*args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(f"database {args[:1]}")
        return real_connect(*args, **kwargs)

    sqlite3.connect = no_database  # type: ignore[assignment]

    bag = DagBag(dag_folder=str(dags), safe_mode=False, bundle_path=dags)
    report = {
        "dags": {
            dag_id: {
                "file": Path(dag.fileloc).name,
                "schedule": getattr(dag.timetable, "expression", None),
                "tasks": sorted(dag.task_ids),
                "tags": sorted(dag.tags),
                "catchup": dag.catchup,
            }
            for dag_id, dag in sorted(bag.dags.items())
        },
        "import_errors": {Path(k).name: v for k, v in bag.import_errors.items()},
        "parse_seconds": {
            Path(stat.file).name: stat.duration.total_seconds() for stat in bag.dagbag_stats
        },
        "attempts": attempts,
        "loanrisk_run": marker.exists(),
    }
    json.dump(report, report_stream, indent=2)
    report_stream.write("\n")


if __name__ == "__main__":
    main()
