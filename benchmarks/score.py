"""Batch scoring: `loanrisk score` of 2,000,000 generated applications vs the packaged
model's own predict on the same rows, where the time goes, and peak memory.

    python benchmarks/score.py [--rows 2000000] [--sqlite] [--engine spark]

Trains and promotes a LightGBM model on 60,000 loans (not timed). Then, in separate
processes: (1) `loanrisk score FILE` with every write (Parquet, predictions rows in
PostgreSQL, scoring_runs); (2) the registered pyfunc model's predict on the same rows,
read in the same chunks, nothing written, timed stage by stage (read, refine, build,
model frame, booster predict, calibration, contributions, decision and reasons, the
answer table's JSON), and the raw booster on the prebuilt features (predict alone, and
predict with contributions). With --engine spark, also `loanrisk score --engine spark
--master local[2]` on the same file (its run is forgotten before the default engine
scores, as both engines share one run id). Peak memory of each process from wait4.
Goals (issue 5): peak < 1.5 GB; loanrisk score >= 0.7 x the raw rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from common import POSTGRES_URL, train_and_promote

HERE = Path(__file__).resolve().parent
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))


def timed(command: list[str], env: dict[str, str], folder: Path) -> tuple[str, float, float]:
    out, err = folder / f"out-{uuid.uuid4().hex}.txt", folder / "err.txt"
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command[:3])}: {err.read_text()[-3000:]}")
    return out.read_text(), seconds, usage.ru_maxrss / 1024


RAW = textwrap.dedent("""
    import json, sys, time
    import mlflow
    from loanrisk.data.readers import read_chunks
    from loanrisk.data.refine import refine
    from loanrisk.data.build import build_features
    from loanrisk.modeling.answers import score_table
    from loanrisk.modeling.features import model_frame
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model("models:/loan_default_model@production")
    bundle = model.unwrap_python_model().bundle
    started, rows = time.perf_counter(), 0
    for chunk in read_chunks(sys.argv[2], chunk_size=20_000):  # as loanrisk score
        rows += len(bundle.predict(chunk))
    seconds = time.perf_counter() - started
    # The same work, stage by stage (each stage timed alone, on the same chunks).
    stages, clock = {}, time.perf_counter
    def timed(name, call, *args):
        began = clock(); value = call(*args)
        stages[name] = stages.get(name, 0.0) + clock() - began
        return value
    booster = getattr(getattr(bundle.candidate, "model", None), "booster_", None)
    chunks = read_chunks(sys.argv[2], chunk_size=20_000)
    while (chunk := timed("read", next, chunks, None)) is not None:
        raw = chunk.reset_index(drop=True)
        parse = lambda: refine(raw, bundle.profile, applications=True)  # noqa: E731
        silver = timed("refine (parse, validate)", parse).silver
        gold = timed("build features", build_features, silver, bundle.profile)
        x = timed("model frame", model_frame, gold, bundle.spec)
        raw_pd = timed("predict", bundle.candidate.predict_raw, x)
        pd_ = timed("calibrate", bundle.calibrator, raw_pd)
        contributions = timed("contributions (TreeSHAP)", bundle.candidate.contributions, x)
        timed("decision, grade, reasons", bundle.decide, pd_, contributions, x.isna().to_numpy())
        timed("= score_table (all above + JSON/Arrow)", score_table, bundle, chunk)
        if booster is not None:
            it = bundle.candidate._iterations()
            timed("raw booster predict", lambda: booster.predict(x, num_iteration=it))
            timed(
                "raw booster predict + contributions",
                lambda: booster.predict(x, num_iteration=it, pred_contrib=True),
            )
    print(json.dumps({"rows": rows, "seconds": seconds, "stages": stages}))
""")


def applications(rows: int) -> Path:
    """The generated applications file of ``rows`` rows (made once, kept in out/)."""
    source = HERE / "out" / f"applications_{rows}.csv.gz"
    source.parent.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        subprocess.run(
            [LOANRISK, "generate", "--rows", str(rows), "--start", "2016-01", "--months", "6",
             "--seed", "77", "--out", str(source), "--json"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return source


def forget_run(env: dict[str, str], run_id: str) -> None:
    """Remove one scoring run (both engines share a run id), so the other can score."""
    url = env.get("LOANRISK_WAREHOUSE__URL") or f"sqlite:///{env['LOANRISK_HOME']}/warehouse.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("predictions", "scoring_runs"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE scoring_run_id = :r"), {"r": run_id})
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--sqlite", action="store_true", help="log to SQLite, not PostgreSQL")
    parser.add_argument("--engine", choices=["pandas", "spark"], default="pandas")
    parser.add_argument("--master", default="local[2]", help="Spark master (--engine spark)")
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
    )
    args = parser.parse_args()
    source = applications(args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="loanrisk-score-"))
    env = {
        **os.environ,
        "LOANRISK_HOME": str(tmp / "home"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    admin, database = None, None
    if not args.sqlite:
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        database = f"loanrisk_score_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        env["LOANRISK_WAREHOUSE__URL"] = admin.url.set(database=database).render_as_string(
            hide_password=False
        )
    try:
        train_and_promote(env, tmp / "history.csv")
        tracking = f"sqlite:///{(tmp / 'home' / 'mlflow.db').resolve()}"
        raw_out, raw_wall, raw_peak = timed(
            [sys.executable, "-c", RAW, tracking, str(source)], env, tmp
        )
        raw = json.loads(raw_out.strip().splitlines()[-1])
        spark = None
        if args.engine == "spark":
            spark_out, spark_wall, _ = timed(
                [
                    LOANRISK,
                    "score",
                    str(source),
                    "--engine",
                    "spark",
                    "--master",
                    args.master,
                    "--json",
                ],
                env,
                tmp,
            )
            spark = json.loads(spark_out)
            forget_run(env, spark["scoring_run_id"])
        score_out, score_wall, score_peak = timed(
            [LOANRISK, "score", str(source), "--json"], env, tmp
        )
        run = json.loads(score_out)
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.dispose()
    raw_rate = raw["rows"] / raw["seconds"]
    score_rate = run["rows_in"] / run["seconds"]
    log = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"\n{args.rows:,} generated applications ({source.name}), LightGBM, log in {log}\n")
    print(f"{'path':<34} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'wall s':>7} {'peak MB':>8}")
    print(
        f"{'packaged model predict (no writes)':<34} {raw['rows']:>10,} {raw['seconds']:>8.1f} "
        f"{raw_rate:>9,.0f} {raw_wall:>7.1f} {raw_peak:>8,.0f}"
    )
    print(
        f"{'loanrisk score (all writes)':<34} {run['rows_in']:>10,} {run['seconds']:>8.1f} "
        f"{score_rate:>9,.0f} {score_wall:>7.1f} {score_peak:>8,.0f}"
    )
    if spark is not None:
        print(
            f"{'loanrisk score --engine spark':<34} {spark['rows_in']:>10,} "
            f"{spark['seconds']:>8.1f} {spark['rows_in'] / spark['seconds']:>9,.0f} "
            f"{spark_wall:>7.1f} {'(JVM)':>8}"
        )
    print(f"\nwhere the packaged model's time goes ({raw['rows']:,} rows, each stage alone)")
    print(f"{'stage':<40} {'seconds':>8} {'share':>6} {'rows/s':>11}")
    parts = {k: v for k, v in raw["stages"].items() if not k.startswith(("=", "raw"))}
    for name, seconds in raw["stages"].items():
        share = f"{seconds / sum(parts.values()):>6.0%}" if name in parts else f"{'':>6}"
        print(f"{name:<40} {seconds:>8.2f} {share} {raw['rows'] / seconds:>11,.0f}")
    print(
        f"\nratio loanrisk score / raw predict: {score_rate / raw_rate:.2f} (goal >= 0.70); "
        f"peak {score_peak:,.0f} MB (goal < 1,500 MB); rows scored {run['rows_scored']:,}, "
        f"invalid {run['rows_invalid']:,}"
    )


if __name__ == "__main__":
    main()
