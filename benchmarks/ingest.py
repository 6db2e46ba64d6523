"""Ingest + refine + build throughput and peak memory, SQLite vs PostgreSQL.

    python benchmarks/ingest.py [--rows 1000000] [--postgres-url URL]

Generates the rows once (cached in benchmarks/out/), then runs the real
``loanrisk ingest`` command once per warehouse in a fresh process and reads that
process's peak resident memory from the kernel (wait4). Goal (issue 2): at least
25,000 rows/s end to end on PostgreSQL and under 1.5 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from common import LOANRISK, POSTGRES_URL

HERE = Path(__file__).resolve().parent
GOAL_ROWS_PER_S = 25_000
GOAL_PEAK_MB = 1_500


def generate(rows: int) -> Path:
    out = HERE / "out" / f"loans_{rows}.csv.gz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run(
            [LOANRISK, "generate", "--rows", str(rows), "--out", str(out), "--json"],
            check=True,
            capture_output=True,
        )
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f}s -> {out}")
    return out


def run_ingest(source: Path, home: Path, env: dict[str, str]) -> tuple[dict, float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [LOANRISK, "--home", str(home), "ingest", str(source), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ingest failed: {stderr.decode()}")
    return json.loads(stdout), seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
    )
    args = parser.parse_args()
    source = generate(args.rows)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("SQLite", *run_ingest(source, Path(tmp) / "sqlite", {})))
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        name = f"loanrisk_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = admin.url.set(database=name).render_as_string(hide_password=False)
            results.append(
                (
                    "PostgreSQL",
                    *run_ingest(source, Path(tmp) / "pg", {"LOANRISK_WAREHOUSE__URL": url}),
                )
            )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

    print(
        f"\ningest + refine + build of {args.rows:,} generated rows ({source.name}, "
        f"{source.stat().st_size / 1e6:.0f} MB gzip), one process per warehouse\n"
    )
    header = (
        f"{'warehouse':<11} {'rows':>10} {'seconds':>8} {'rows/s':>8} {'goal':>7} "
        f"{'ratio':>6} {'peak MB':>8} {'goal MB':>8} {'reconciled':>10}"
    )
    print(header)
    print("-" * len(header))
    for label, report, seconds, peak in results:
        rows = report["batches"][0]["rows_bronze"]
        rate = rows / seconds
        print(
            f"{label:<11} {rows:>10,} {seconds:>8.1f} {rate:>8,.0f} {GOAL_ROWS_PER_S:>7,} "
            f"{rate / GOAL_ROWS_PER_S:>6.2f} {peak:>8,.0f} {GOAL_PEAK_MB:>8,} "
            f"{report['warehouse']['reconciled']!s:>10}"
        )
    print(
        "\nseconds = wall time of the whole `loanrisk ingest` process (start-up, hashing, "
        "bronze + silver + rejects + gold writes, commit); goal applies to PostgreSQL."
    )


if __name__ == "__main__":
    main()
