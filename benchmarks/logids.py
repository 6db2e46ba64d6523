"""What the order of prediction ids costs PostgreSQL: the service's prediction log written
with random 128-bit ids against time-ordered ones (``Service.new_id``: milliseconds, then
80 random bits), into a ``predictions`` table that already holds many rows.

    python benchmarks/logids.py [--existing 1000000] [--batches 40] [--batch-rows 1000]

A fresh database is migrated and loaded with --existing rows under random ids (a log that
has run for a while). Then the two kinds of id take turns, a batch each, --batches times:
every batch is one COPY of --batch-rows serving-shaped rows (what one flush of the log
writer sends). For each kind: wall time, the PostgreSQL backend's CPU time (from /proc, so
only when the server runs on this machine) and the WAL it wrote, per row. A random id
lands on a random leaf page of the primary-key index; a time-ordered one on the rightmost.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from common import POSTGRES_URL
from pgwrite import rows
from pydantic import SecretStr

from loanrisk.config import get_settings
from loanrisk.serving.deps import Service
from loanrisk.warehouse.bulk import write_arrow
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.schema import predictions

_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(conn: sa.Connection) -> float | None:
    """CPU seconds (user + system) of this connection's backend, if it runs here."""
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def wal(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").scalar())


def random_ids(n: int, source: random.Random) -> list[str]:
    return [f"{source.getrandbits(128):032x}" for _ in range(n)]


def ordered_ids(n: int, source: random.Random) -> list[str]:
    service: Any = SimpleNamespace(ids=source)
    return [Service.new_id(service) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-rows", type=int, default=1_000)
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
    )
    args = parser.parse_args()
    source = random.Random(7)
    batch, constants = rows(args.batch_rows)
    constants = constants | {"source": "api", "scoring_run_id": None}
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"loanrisk_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    kinds = {"random (uniform 128 bits)": random_ids, "time-ordered (Service.new_id)": ordered_ids}
    totals = {kind: [0.0, 0.0, 0] for kind in kinds}  # wall, cpu, wal
    cpu_known = True
    try:
        settings = get_settings()
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        settings.warehouse.url = SecretStr(url)
        with Warehouse.open(settings) as warehouse:
            engine = warehouse.engine
            short = pa.repeat(pa.scalar("{}"), batch.num_rows)  # small rows: a quick load
            small = batch.set_column(batch.schema.get_field_index("input"), "input", short)
            small = small.set_column(small.schema.get_field_index("features"), "features", short)
            loaded = 0
            print(f"loading {args.existing:,} rows with random ids ...", flush=True)
            while loaded < args.existing:
                n = min(100_000, args.existing - loaded)
                filler = pa.concat_tables([small] * -(-n // small.num_rows)).slice(0, n)
                filler = filler.set_column(0, "prediction_id", pa.array(random_ids(n, source)))
                with engine.begin() as conn:
                    write_arrow(conn, predictions, filler, constants=constants)
                loaded += n
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE predictions")
                conn.exec_driver_sql("CHECKPOINT")
            with engine.connect() as conn:  # one backend for every timed batch
                conn.commit()
                for _ in range(args.batches):
                    for kind, make in kinds.items():
                        ids = pa.array(make(batch.num_rows, source))
                        table = batch.set_column(0, "prediction_id", ids)
                        cpu, written = backend_cpu(conn), wal(conn)
                        started = time.perf_counter()
                        write_arrow(conn, predictions, table, constants=constants)
                        conn.commit()
                        totals[kind][0] += time.perf_counter() - started
                        after = backend_cpu(conn)
                        if cpu is None or after is None:
                            cpu_known = False
                        else:
                            totals[kind][1] += after - cpu
                        totals[kind][2] += wal(conn) - written
                        conn.commit()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    n = args.batches * args.batch_rows
    print(
        f"\n{n:,} rows per kind of id ({args.batches} COPY batches of {args.batch_rows:,}, "
        f"taking turns) into a predictions table of {args.existing:,} rows\n"
    )
    header = f"{'ids':<30} {'wall µs/row':>12} {'PG CPU µs/row':>14} {'WAL B/row':>10}"
    print(header)
    print("-" * len(header))
    for kind, (seconds, cpu, written) in totals.items():
        shown = f"{cpu / n * 1e6:>14.1f}" if cpu_known else f"{'n/a':>14}"
        print(f"{kind:<30} {seconds / n * 1e6:>12.1f} {shown} {written / n:>10,.0f}")
    ordered, uniform = totals["time-ordered (Service.new_id)"], totals["random (uniform 128 bits)"]
    print(
        f"\ntime-ordered / random: wall {ordered[0] / uniform[0]:.2f}x, "
        + (f"PG CPU {ordered[1] / uniform[1]:.2f}x, " if cpu_known and uniform[1] else "")
        + f"WAL {ordered[2] / uniform[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
