"""Time `lapidar data check` end to end (a fresh process: imports, tokenizer load, read, detect, every check).

    python bench/make_data_100k.py                      # writes /tmp/lapidar-data-100k.jsonl
    python bench/data_check_speed.py [FILE] [--profile]  # prints wall seconds and the machine load

`--profile` runs the check under cProfile and prints the 25 most expensive functions (cumulative time). On a
loaded machine compare the CPU time (user + system), not the wall time.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    """Run the check once and report the wall time."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = Path(args[0]) if args else Path("/tmp/lapidar-data-100k.jsonl")
    if not path.is_file():
        sys.exit(f"{path}: not found; write it with `python bench/make_data_100k.py {path}`")
    prefix = [sys.executable, "-m", "cProfile", "-s", "cumulative", "-m", "lapidar"]
    cmd = [*(prefix if "--profile" in sys.argv else [sys.executable, "-m", "lapidar"]), "data", "check", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"})
    seconds = time.perf_counter() - start
    if "--profile" in sys.argv:
        lines = proc.stdout.splitlines()
        top = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print("\n".join(lines[top : top + 26]))
    else:
        print("\n".join(proc.stdout.splitlines()[:6]))
    if proc.returncode not in (0, 2):
        print(proc.stderr[-3000:])
    load = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # CPU time: comparable across machine loads
    print(
        f"{path.name}: exit {proc.returncode} in {seconds:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU "
        f"(user + system; load average {load[0]:.2f}, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
