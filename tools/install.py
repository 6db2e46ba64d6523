"""Install a lock file into the running venv with a progress line (pip's own --quiet
install prints nothing for minutes). Used by the Makefile; needs nothing but pip.

    .venv/bin/python tools/install.py requirements-image.lock
"""

from __future__ import annotations

import subprocess
import sys
import time


def main(lock: str) -> int:
    with open(lock, encoding="utf-8") as handle:
        total = sum(1 for line in handle if "==" in line and not line.lstrip().startswith("#"))
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    command += ["--require-hashes", "--no-deps", "--progress-bar", "off", "-r", lock]
    started, seen, shown = time.monotonic(), 0, -1
    live = sys.stdout.isatty()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if line.startswith(("Collecting ", "Processing ")):
            seen += 1
            name = line.split()[1].rsplit("/", 1)[-1]
            if live:
                say(f"\r  [{seen}/{total}] {name[:50]:<50}")
            elif seen * 10 // total != shown:  # a plain log: a line every 10 %
                shown = seen * 10 // total
                say(f"  [{seen}/{total}] {name}\n")
        elif line.startswith("Installing collected packages"):
            say(f"{chr(10) if live else ''}  unpacking {total} packages into the venv ...\n")
    code = process.wait()
    if code != 0:
        sys.stdout.write("".join(tail))
        return code
    say(f"  installed {total} packages in {time.monotonic() - started:.0f} s\n")
    return 0


def say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
