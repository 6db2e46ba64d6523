"""Batch scoring of this checkout against earlier commits, side by side in one run.

    python benchmarks/score_versions.py REV [REV ...] [--rows 300000]

For each git revision (and then the working tree), checks it out into a temporary
worktree and runs that revision's own `benchmarks/score.py` on the same generated file,
with that revision's code first on PYTHONPATH (this venv's packages: a revision whose
lock differs from this one's is measured on this lock). Each revision trains its own
model the way its code does. Prints one table: the packaged predict and `loanrisk score`
rows/s of each, and the ratio of each to the first revision. Needs PostgreSQL (as
`score.py`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from score import applications

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROW = re.compile(
    r"^(packaged model predict \(no writes\)|loanrisk score \(all writes\))\s+[\d,]+\s+"
)


def measure(tree: Path, rows: int, source: Path) -> dict[str, float]:
    """``tree``'s own score benchmark on ``source``; rows/s of its two paths."""
    out = tree / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    target = out / source.name
    if target.resolve() != source.resolve():
        shutil.copyfile(source, target)
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "score.py"), "--rows", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    if done.returncode:
        raise SystemExit(f"{tree}: score.py failed:\n{done.stderr[-3000:]}")
    found = {}
    for line in done.stdout.splitlines():
        if ROW.match(line):
            name = "predict" if line.startswith("packaged") else "score"
            found[name] = float(line.split()[-3].replace(",", ""))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare with")
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    source = applications(args.rows)  # one file for every revision
    results: list[tuple[str, dict[str, float]]] = []
    scratch = Path(tempfile.mkdtemp(prefix="loanrisk-versions-"))
    try:
        for revision in args.revisions:
            tree = scratch / revision.replace("/", "_")
            git = ["git", "-C", str(ROOT), "worktree"]
            subprocess.run([*git, "add", "--detach", "-q", str(tree), revision], check=True)
            try:
                results.append((revision, measure(tree, args.rows, source)))
            finally:
                subprocess.run([*git, "remove", "--force", str(tree)], check=False)
            print(f"{revision}: {results[-1][1]}", flush=True)
        results.append(("working tree", measure(ROOT, args.rows, source)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    first = results[0][1]
    print(f"\n{args.rows:,} generated applications, one run, quiet machine expected\n")
    print(f"{'revision':<14} {'predict rows/s':>15} {'score rows/s':>13} {'score vs first':>15}")
    for name, found in results:
        print(
            f"{name:<14} {found['predict']:>15,.0f} {found['score']:>13,.0f} "
            f"{found['score'] / first['score']:>14.2f}x"
        )


if __name__ == "__main__":
    main()
