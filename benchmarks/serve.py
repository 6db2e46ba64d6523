"""Serving throughput and latency: `mlflow models serve`, the bare limit and `loanrisk
serve`, same registered model.

    python benchmarks/serve.py [--seconds 6] [--workers 2] [--servers mlflow,bare,loanrisk]
                               [--cells 1x32,100x32] [--rounds 3]

Trains and promotes one LightGBM model on generated loans (embedded MLflow store), then
serves that registered version three ways on loopback: MLflow's own server; the bare
limit (`benchmarks/bare.py`: loanrisk's fast scorer behind a minimal ASGI app, no log,
auth, metrics or validation, same uvicorn and worker count); and `loanrisk serve` with the
durable prediction log (write-ahead file + PostgreSQL) on a fresh database. Each cell sends
one application, or 100, per request from 1, 8 and 32 concurrent keep-alive clients for a
bounded time, and reports requests/s, applications/s and p50/p99 latency, then ratios.
Each loanrisk cell also says how its group commits went (the service's fsync histogram:
how many, the mean, how many took over 50 ms, the slowest bucket): every answer waits for
one, so a slow disk shows there and in the tail. At the end the `predictions` rows are
counted against the applications loanrisk answered.
Goals: issue 4, >= 10x MLflow's single-application throughput and p99 <= 50 ms at 32
clients; issue 12, with the durable log >= 0.6x the bare limit at 1 app x 32 clients and,
for 100-application requests at 32 clients, p99 <= 3x p50.

Load generator: `wrk` (Debian package; C, event loop) when it is installed, else Python
clients (threads in two processes; their own GIL queueing inflates the tail). Both servers
get the same generator. With wrk, the applications answered are the service's own count
(`loanrisk_predictions_total`), cross-checked against wrk's completed requests: wrk stops
without reading the replies still in flight, at most one per connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from common import APPLICATION_FIELDS, POSTGRES_URL, train_and_promote

LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
BIN = str(Path(sys.executable).parent)
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited while starting: {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server did not start: {url}")


def _client(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    stop_at: float,
    out: list[float],
    errors: list[int],
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                out.append(time.perf_counter() - started)
            else:
                errors.append(response.status)
        except (OSError, http.client.HTTPException):
            errors.append(0)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


def _load_process(args: tuple) -> tuple[list[float], list[int]]:
    port, path, body, headers, clients, seconds = args
    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[int] = []
    threads = [
        threading.Thread(
            target=_client, args=(port, path, body, headers, stop_at, latencies, errors)
        )
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def load(
    port: int, path: str, body: bytes, headers: dict[str, str], clients: int, seconds: float
) -> dict[str, float]:
    """Closed-loop load from up to 2 client processes (threads inside), bounded in time."""
    processes = min(2, clients)
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    with mp.Pool(processes) as pool:
        results = pool.map(_load_process, [(port, path, body, headers, n, seconds) for n in share])
    latencies = np.array([x for r in results for x in r[0]])
    errors = sum(len(r[1]) for r in results)
    if not len(latencies):
        return {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": errors, "ok": 0}
    return {
        "rps": len(latencies) / seconds,
        "p50": float(np.percentile(latencies, 50) * 1000),
        "p99": float(np.percentile(latencies, 99) * 1000),
        "errors": errors,
        "ok": len(latencies),
    }


WRK_SCRIPT = """
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "non2xx": %d, "errors": %d, "p50": %f, "p99": %f, "us": %d}}\\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def load_wrk(
    port: int, path: str, body: bytes, headers: dict[str, str], clients: int, seconds: float
) -> dict[str, float]:
    """Closed-loop load from wrk: ``clients`` connections on up to 2 threads."""
    folder = Path(tempfile.mkdtemp(prefix="wrk-"))
    (folder / "body.json").write_bytes(body)
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=folder / "body.json", headers=lines))
    duration = f"-d{max(1, round(seconds))}s"
    command = ["wrk", f"-t{min(2, clients)}", f"-c{clients}", duration, "--timeout", "30s"]
    done = subprocess.run(
        [*command, "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    ok = summary["requests"] - summary["non2xx"]
    return {
        "rps": ok / (summary["us"] / 1e6),
        "p50": summary["p50"] / 1000,
        "p99": summary["p99"] / 1000,
        "errors": summary["non2xx"] + summary["errors"],
        "ok": ok,
    }


def wait_quiet(idle_share: float = 0.9, limit: float = 30.0) -> float:
    """Wait (at most ``limit`` s) until the CPUs are ``idle_share`` idle over half a second."""

    def idle_and_total() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    started = time.monotonic()
    while time.monotonic() - started < limit:
        idle, total = idle_and_total()
        time.sleep(0.5)
        idle_after, total_after = idle_and_total()
        if (idle_after - idle) >= idle_share * max(total_after - total, 1):
            break
    return time.monotonic() - started


def metrics_text(port: int) -> str:
    """The service's /metrics (it covers every worker)."""
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def served_applications(port: int) -> int:
    """The service's own count of answered applications."""
    text = metrics_text(port)
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("loanrisk_predictions_total{")
        )
    )


FSYNC = "loanrisk_prediction_log_fsync_duration_seconds"


def group_commits(port: int) -> dict[str, float]:
    """The service's fsync histogram (all workers): cumulative counts by bucket bound
    (``le`` as text), plus ``count`` and ``sum``."""
    text = metrics_text(port)
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{FSYNC}_bucket{{"):
            found[line.split('le="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((f"{FSYNC}_count ", f"{FSYNC}_sum ")):
            found[line.split(" ", 1)[0].rsplit("_", 1)[1]] = float(line.rsplit(" ", 1)[1])
    return found


def commit_summary(before: dict[str, float], after: dict[str, float]) -> str:
    """A cell's group commits: how many, their mean, how many took over 50 ms, and the
    bucket the slowest fell in (a slow disk shows in the answers' tail)."""
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if not count:
        return "no group commits"
    mean = (after["sum"] - before.get("sum", 0.0)) / count * 1000
    diff = {le: after[le] - before.get(le, 0.0) for le in after if le not in ("count", "sum")}
    slow = count - diff.get("0.05", count)
    slowest = min((float(le) for le, n in diff.items() if n == count), default=float("inf"))
    bound = "> 2.5 s" if slowest == float("inf") else f"<= {slowest * 1000:g} ms"
    return (
        f"{count:,.0f} group commits, mean {mean:.2f} ms, {slow:,.0f} over 50 ms, slowest {bound}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per cell")
    parser.add_argument("--workers", type=int, default=2, help="loanrisk serve workers")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
    )
    parser.add_argument(
        "--servers",
        default="mlflow,bare,loanrisk",
        help="which servers to measure, comma-separated (mlflow, bare, loanrisk)",
    )
    parser.add_argument(
        "--cells",
        default="1x1,1x8,1x32,100x1,100x8,100x32",
        help="applications-per-request x clients, comma-separated",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every cell this many times, the servers taking turns each round (on a "
        "shared machine one cell's ratio moves by +-10 %% or more from run to run); the "
        "ratios are printed per round with their median",
    )
    args = parser.parse_args()
    servers = set(args.servers.split(","))
    cells = [tuple(int(n) for n in c.split("x")) for c in args.cells.split(",")]
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    generate = load_wrk if use_wrk else load
    print(f"load generator: {'wrk' if use_wrk else 'Python clients'}")

    tmp = Path(tempfile.mkdtemp(prefix="loanrisk-bench-"))
    home = tmp / "home"
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    database = f"loanrisk_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    warehouse_url = admin.url.set(database=database).render_as_string(hide_password=False)
    env = {
        **os.environ,
        "LOANRISK_HOME": str(home),
        "LOANRISK_WAREHOUSE__URL": warehouse_url,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "LOANRISK_SERVING__API_KEYS": json.dumps(
            [{"name": "bench", "sha256": __import__("hashlib").sha256(KEY.encode()).hexdigest()}]
        ),
        "LOANRISK_SERVING__MAX_APPLICATIONS": "100",
    }
    processes: list[subprocess.Popen] = []
    try:
        loans = tmp / "loans.csv"
        train_and_promote(env, loans)
        print("trained and promoted a LightGBM model on 60,000 generated loans")

        import pandas as pd

        apps = pd.read_csv(loans, dtype=str, keep_default_na=False).head(100)
        records = [
            {k: r[k] for k in APPLICATION_FIELDS if r[k] != ""} for r in apps.to_dict("records")
        ]

        mlflow_port, bare_port, loanrisk_port = free_port(), free_port(), free_port()
        log_path = tmp / "servers.log"
        json_headers = {"Content-Type": "application/json"}
        commands = {
            "mlflow models serve": (
                [
                    f"{BIN}/mlflow",
                    "models",
                    "serve",
                    "-m",
                    "models:/loan_default_model@production",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(mlflow_port),
                ],
                env | {"MLFLOW_TRACKING_URI": f"sqlite:///{home.resolve()}/mlflow.db"},
                f"http://127.0.0.1:{mlflow_port}/ping",
                (
                    mlflow_port,
                    "/invocations",
                    lambda rs: json.dumps({"dataframe_records": rs}).encode(),
                    json_headers,
                ),
            ),
            "bare limit": (
                [
                    f"{BIN}/uvicorn",
                    "bare:app_factory",
                    "--factory",
                    "--app-dir",
                    str(Path(__file__).parent),
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(args.workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--timeout-worker-healthcheck",
                    "120",
                ],
                env,
                f"http://127.0.0.1:{bare_port}/ready",
                (
                    bare_port,
                    "/",
                    lambda rs: json.dumps(rs if len(rs) > 1 else rs[0]).encode(),
                    json_headers,
                ),
            ),
            "loanrisk serve": (
                [LOANRISK, "serve", "--port", str(loanrisk_port), "--workers", str(args.workers)],
                env,
                f"http://127.0.0.1:{loanrisk_port}/ready",
                (
                    loanrisk_port,
                    "/v1/predict",
                    lambda rs: json.dumps(rs if len(rs) > 1 else rs[0]).encode(),
                    json_headers | {"Authorization": f"Bearer {KEY}"},
                ),
            ),
        }
        chosen = {
            name: spec
            for name, spec in commands.items()
            if name.split()[0] in servers or (name == "bare limit" and "bare" in servers)
        }
        targets = {}
        with log_path.open("w") as log:
            for name, (command, server_env, ready, target) in chosen.items():
                process = subprocess.Popen(
                    command, env=server_env, stdout=log, stderr=subprocess.STDOUT
                )
                processes.append(process)
                wait_for(ready, process)
                targets[name] = target
        loanrisk_process = processes[-1] if "loanrisk serve" in chosen else None

        table = []
        answered = 0  # applications loanrisk answered, warm-ups included
        for size, clients in [cell for _ in range(args.rounds) for cell in cells]:
            for name, (port, path, encode, headers) in targets.items():
                body = encode(records[:size])
                warm = generate(port, path, body, headers, 1, 1)
                ours = name == "loanrisk serve"
                commits = group_commits(port) if ours else {}
                result = generate(port, path, body, headers, clients, args.seconds)
                if ours:
                    answered += (warm["ok"] + result["ok"]) * size
                    result["commits"] = commit_summary(commits, group_commits(port))
                table.append((name, size, clients, result))
                # A server can still be working off requests the generator gave up on (MLflow
                # queues seconds of them at 32 clients), and PostgreSQL may be vacuuming the
                # rows just logged: start the next cell on a quiet machine.
                time.sleep(1.0)
                wait_quiet()
                print(
                    f"  {name:<20} {size:>3} app(s)/req {clients:>2} clients: "
                    f"{result['rps']:8.1f} req/s p99 {result['p99']:7.1f} ms "
                    f"errors {result['errors']}" + (f"; {result['commits']}" if ours else ""),
                    flush=True,
                )
        time.sleep(2)  # replies still in flight when the generator stopped are answered
        served = served_applications(loanrisk_port) if loanrisk_process else 0
        if loanrisk_process is not None:
            loanrisk_process.terminate()
            loanrisk_process.wait(timeout=60)
        engine = sa.create_engine(warehouse_url)
        with engine.connect() as conn:
            logged = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT prediction_id) FROM predictions")
            ).one()
        engine.dispose()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()

    print(
        f"\n{'server':<20} {'apps/req':>8} {'clients':>7} {'req/s':>9} {'apps/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for name, size, clients, r in table:
        print(
            f"{name:<20} {size:>8} {clients:>7} {r['rps']:>9.1f} {r['rps'] * size:>9.1f} "
            f"{r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>6}"
        )
    # Each cell's results per server, one per round, in the order they ran.
    runs: dict[tuple[int, int], dict[str, list[dict]]] = {}
    for name, size, clients, r in table:
        runs.setdefault((size, clients), {}).setdefault(name, []).append(r)

    def summary(values: list[float], unit: str) -> str:
        text = f"{values[0]:6.2f}{unit}"
        if len(values) > 1:
            rounds = ", ".join(f"{v:.2f}" for v in values)
            text = f"{float(np.median(values)):6.2f}{unit} (median of rounds: {rounds})"
        return text

    for reference in ("mlflow models serve", "bare limit"):
        if reference not in targets or "loanrisk serve" not in targets:
            continue
        print(f"\nratio loanrisk serve / {reference} (requests/s, each round's own pair):")
        for (size, clients), by_server in runs.items():
            pairs = zip(by_server["loanrisk serve"], by_server[reference], strict=True)
            ratios = [ours["rps"] / base["rps"] if base["rps"] else 0.0 for ours, base in pairs]
            print(f"  {size:>3} app(s)/request, {clients:>2} clients: {summary(ratios, 'x')}")
    if "loanrisk serve" in targets:
        print("\nloanrisk serve tail (p99 / p50):")
        for (size, clients), by_server in runs.items():
            tails = [r["p99"] / r["p50"] for r in by_server["loanrisk serve"]]
            print(f"  {size:>3} app(s)/request, {clients:>2} clients: {summary(tails, '')}")
    verdict = "equal" if logged[0] == logged[1] == served else "NOT equal"
    print(
        f"\npredictions rows {logged[0]:,} (distinct ids {logged[1]:,}) vs applications "
        f"answered by loanrisk serve {served:,} (its /metrics, all workers): {verdict}; "
        f"the load generator read {answered:,} answers (wrk drops replies in flight at the "
        "end of each cell)"
    )


if __name__ == "__main__":
    main()
