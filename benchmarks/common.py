"""Set-up shared by the benchmarks (not a benchmark itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LOANRISK = str(Path(sys.executable).with_name("loanrisk"))


def train_and_promote(env: dict[str, str], loans: Path) -> None:
    """A LightGBM model on 60,000 matured generated loans, registered and @production."""
    steps = [
        [
            "generate",
            "--rows",
            "60000",
            "--start",
            "2014-01",
            "--months",
            "18",
            "--as-of",
            "2020-01",
            "--seed",
            "9",
            "--out",
            str(loans),
        ],
        ["ingest", str(loans)],
        ["train", "--trials", "0", "--candidates", "lightgbm"],
        ["promote"],
    ]
    for step in steps:
        subprocess.run([LOANRISK, *step, "--json"], env=env, check=True, capture_output=True)
