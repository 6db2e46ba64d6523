"""Synthetic data speed: `loanrisk generate` of 1,000,000 rows per output format.

    python benchmarks/generate.py [--rows 1000000]

Goal (issue 2): 1,000,000 rows in under 60 s. Each format runs as the real command in
its own process; the table gives wall time, rows/s and the ratio to the goal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
GOAL_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(
        f"{'format':<9} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'MB':>6} {'goal s':>7} "
        f"{'goal/actual':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".csv", ".csv.gz", ".parquet"):
            out = Path(tmp) / f"loans{suffix}"
            started = time.perf_counter()
            subprocess.run(
                [LOANRISK, "generate", "--rows", str(args.rows), "--out", str(out), "--json"],
                check=True,
                capture_output=True,
            )
            seconds = time.perf_counter() - started
            print(
                f"{suffix[1:]:<9} {args.rows:>10,} {seconds:>8.1f} {args.rows / seconds:>9,.0f} "
                f"{out.stat().st_size / 1e6:>6.0f} {GOAL_SECONDS:>7.0f} "
                f"{GOAL_SECONDS / seconds:>11.1f}"
            )


if __name__ == "__main__":
    main()
