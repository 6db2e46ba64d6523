"""CPU per request of the service's ASGI app itself, without HTTP: where the price of the
durable prediction log goes.

    python benchmarks/appcpu.py [--requests 9600] [--concurrency 32] [--rounds 2]

Trains and promotes one LightGBM model (as `serve.py`), then, in a fresh process per
measurement and taking turns, drives one app in-process with batches of ``--concurrency``
concurrent `POST /v1/predict` calls (one application each) and reads the process's CPU
time per request, and each thread's:

- **bare**: `benchmarks/bare.py`, the fast scorer behind a minimal ASGI app;
- **loanrisk, log encoded only**: `loanrisk serve`'s app with `PredictionLog.record`
  replaced by the encoding of the rows (nothing written, nothing awaited);
- **loanrisk, fsync inline**: the same app with each request's rows written and fsynced
  on the request's own thread, one fsync a request (no flusher, no grouping);
- **loanrisk**: `loanrisk serve`'s app with the durable log (write-ahead file with group
  commit, writer thread into PostgreSQL on a fresh database); the last column says how
  many requests each fsync covered.

No sockets, no load generator and no uvicorn: the difference between the last two rows is
what the durable log costs the worker, which `serve.py` can only see mixed with
everything else on the machine. A diagnostic, with no goal of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import APPLICATION_FIELDS, POSTGRES_URL, train_and_promote

KEY = "bench-key"
VARIANTS = {
    "bare": "bare",
    "encoded": "loanrisk, log encoded only",
    "inline": "loanrisk, fsync inline",
    "durable": "loanrisk",
}


def _app(variant: str) -> Any:
    if variant == "bare":
        from bare import app_factory  # beside this script, on its path

        return app_factory()
    from loanrisk.serving.main import app_factory as service

    return service()


def _encoded_only(app: Any) -> None:
    """The log of ``app`` reduced to encoding its rows (the request still pays that)."""
    from loanrisk.serving.predlog import encode_rows

    log = app.service.prediction_log

    async def record(rows: list[dict[str, Any]]) -> None:
        encode_rows(rows)

    log.record = record


def _inline(app: Any, folder: Path) -> None:
    """The log of ``app`` reduced to writing and fsyncing its rows on the request's own
    thread (no flusher, no writer): what durability costs without thread hand-overs."""
    from loanrisk.serving.predlog import encode_rows

    log = app.service.prediction_log
    fd = os.open(folder / "inline.wal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def record(rows: list[dict[str, Any]]) -> None:
        os.write(fd, b"".join(encode_rows(rows)))
        os.fdatasync(fd)

    log.record = record


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by native thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


async def _drive(variant: str, body: bytes, requests: int, concurrency: int) -> dict[str, Any]:
    app = _app(variant)
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def life_send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    life = asyncio.create_task(app({"type": "lifespan", "state": {}}, messages.get, life_send))
    await started.wait()
    if variant == "encoded":
        _encoded_only(app)
    if variant == "inline":
        _inline(app, Path(os.environ["LOANRISK_HOME"]))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"x-api-key", KEY.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }

    async def one() -> None:
        statuses = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)
        if statuses != [200]:
            raise SystemExit(f"{variant}: answered {statuses}")

    async def batches(count: int) -> None:
        for _ in range(count // concurrency):
            await asyncio.gather(*[one() for _ in range(concurrency)])

    await batches(max(requests // 4, concurrency))  # warm-up
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    metrics = app.service.prediction_log.metrics if variant != "bare" else None
    fsyncs = metrics.fsyncs if metrics else 0
    before, cpu, wall = _thread_cpu(), time.process_time(), time.perf_counter()
    await batches(requests)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = _thread_cpu()
    done = requests // concurrency * concurrency
    fsyncs = (metrics.fsyncs - fsyncs) if metrics else 0
    threads = {
        names.get(tid, tid): (after[tid] - before.get(tid, 0.0)) / done * 1e6 for tid in after
    }
    await messages.put({"type": "lifespan.shutdown"})
    await life
    return {
        "cpu_us": cpu / done * 1e6,
        "wall_us": wall / done * 1e6,
        "threads": threads,
        "per_fsync": done / fsyncs if fsyncs else None,
    }


def child(variant: str, body_path: str, requests: int, concurrency: int) -> None:
    body = Path(body_path).read_bytes()
    print(json.dumps(asyncio.run(_drive(variant, body, requests, concurrency))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=9_600, help="measured, per process")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests, args.concurrency)
        return
    tmp = Path(tempfile.mkdtemp(prefix="loanrisk-appcpu-"))
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    database = f"loanrisk_appcpu_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    env = {
        **os.environ,
        "LOANRISK_HOME": str(tmp / "home"),
        "LOANRISK_WAREHOUSE__URL": admin.url.set(database=database).render_as_string(
            hide_password=False
        ),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "LOANRISK_SERVING__API_KEYS": json.dumps(
            [{"name": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]
        ),
        "LOANRISK_LOG_LEVEL": "WARNING",
    }
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        loans = tmp / "loans.csv"
        train_and_promote(env, loans)
        import pandas as pd

        row = pd.read_csv(loans, dtype=str, keep_default_na=False).iloc[0]
        body = tmp / "body.json"
        body.write_text(json.dumps({k: row[k] for k in APPLICATION_FIELDS if row[k] != ""}))
        for _ in range(args.rounds):
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--child", variant, str(body)]
                command += ["--requests", str(args.requests)]
                command += ["--concurrency", str(args.concurrency)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{variant} failed: {done.stderr[-3000:]}")
                results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
    print(f"\n{args.requests:,} requests per process, {args.concurrency} at a time, in-process\n")
    print(
        f"{'app':<28} {'CPU µs/request, each round':<30} "
        f"{'busiest threads (µs/request)':<58} requests/fsync"
    )
    for variant, label in VARIANTS.items():
        cpus = " / ".join(f"{r['cpu_us']:,.0f}" for r in results[variant])
        last = results[variant][-1]["threads"]
        busy = sorted(last.items(), key=lambda kv: -kv[1])[:3]
        threads = ", ".join(f"{name} {us:,.0f}" for name, us in busy if us >= 1)
        groups = " / ".join(f"{r['per_fsync']:.1f}" for r in results[variant] if r["per_fsync"])
        print(f"{label:<28} {cpus:<30} {threads:<58} {groups}")


if __name__ == "__main__":
    main()
