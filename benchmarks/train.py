"""Training time and peak memory: `loanrisk train` of the three candidates on 500,000 gold rows.

    python benchmarks/train.py [--rows 500000] [--trials N]

Generates matured loans (cached in benchmarks/out/), ingests them into a fresh embedded
warehouse (not timed), then runs the real `loanrisk train --json` with default settings
in its own process, reading its peak resident memory from the kernel (wait4).
Goal (issue 3): under 10 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
GOAL_SECONDS = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--trials", type=int, default=None, help="default: the setting (4)")
    args = parser.parse_args()
    source = HERE / "out" / f"matured_{args.rows}.csv.gz"
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                LOANRISK,
                "generate",
                "--rows",
                str(args.rows),
                "--start",
                "2014-01",
                "--months",
                "36",
                "--as-of",
                "2020-01",
                "--seed",
                "3",
                "--out",
                str(source),
                "--json",
            ],
            check=True,
            capture_output=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        ingest = subprocess.run(
            [LOANRISK, "--home", str(home), "ingest", str(source), "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        gold_rows = json.loads(ingest.stdout)["warehouse"]["tables"]["gold_loan_features"]
        command = [LOANRISK, "--home", str(home), "train", "--json"]
        if args.trials is not None:
            command += ["--trials", str(args.trials)]
        out_path, err_path = Path(tmp) / "out.json", Path(tmp) / "err.txt"
        started = time.perf_counter()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"train failed: {err_path.read_text()[-3000:]}")
        result = json.loads(out_path.read_text())
    peak_mb = usage.ru_maxrss / 1024
    print(
        f"\nloanrisk train on {gold_rows:,} gold rows ({result['data']['rows']:,} labelled), "
        f"split {result['split']['split']}: train {result['split']['train_rows']:,}, "
        f"valid {result['split']['valid_rows']:,}, test {result['split']['test_rows']:,}\n"
    )
    print(
        f"{'candidate':<22} {'trials':>6} {'seconds':>8} {'valid AUC':>9} {'test AUC':>8} "
        f"{'test ECE':>8}"
    )
    for c in result["candidates"]:
        print(
            f"{c['name']:<22} {c['trials']:>6} {c['seconds']:>8.0f} {c['valid_auc']:>9.4f} "
            f"{c['test']['auc']:>8.4f} {c['test']['ece']:>8.4f}"
        )
    print(f"\n{'total wall s':>14} {'goal s':>7} {'goal/actual':>11} {'peak MB':>8}")
    print(f"{seconds:>14.0f} {GOAL_SECONDS:>7.0f} {GOAL_SECONDS / seconds:>11.2f} {peak_mb:>8,.0f}")
    print(f"\nwinner: {result['winner']} (version {result['version']})")


if __name__ == "__main__":
    main()
