"""The peak memory a run reports is its own, not that of the process that started it.

Linux carries `ru_maxrss` over `execve`: a process started by subprocess (vfork + exec) from a 1.5 GiB parent
reports a 1.5 GiB peak before it has allocated anything. That is how `lapidar ui`'s jobs, `lapidar bench` and the
estimate-accuracy measurements start training, so the peak must come from the process's own address space.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PARENT = """
import subprocess, sys
big = bytearray(1536 * 2**20)
for i in range(0, len(big), 4096):
    big[i] = 1
child = "from lapidar.training.hardware import peak_rss_mib; print(peak_rss_mib())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout.strip())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss over execve is a Linux behaviour")
def test_a_process_started_by_a_big_parent_reports_its_own_peak():
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, check=True, timeout=120)
    peak = float(out.stdout.strip())
    assert 5 < peak < 400, f"the child reported {peak} MiB: the 1536 MiB parent's peak, not its own"


def test_the_peak_counts_what_the_process_touched():
    child = (
        "from lapidar.training.hardware import peak_rss_mib\n"
        "before = peak_rss_mib()\n"
        "block = bytearray(512 * 2**20)\n"
        "for i in range(0, len(block), 4096): block[i] = 1\n"
        "del block\n"
        "print(before, peak_rss_mib())\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=120)
    before, after = map(float, out.stdout.split())
    assert after - before >= 500, "a peak stays after the memory is freed"
