"""`return_freed_blocks`: freed activation-sized tensors leave the process instead of staying in glibc's heap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys, torch
from lapidar.training.hardware import return_freed_blocks
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
if sys.argv[1] == "on":
    assert return_freed_blocks()
big = torch.ones(4 << 20); del big  # a freed 16 MiB mapping raises glibc's dynamic mmap threshold
blocks = [torch.ones(2 << 20) for _ in range(40)]  # 40 x 8 MiB
before = rss_mib()
del blocks[::2]  # free every other block: 160 MiB of holes between live ones
print(round(before - rss_mib()))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_freed_tensors_are_returned_to_the_os_only_with_the_fixed_threshold():
    def returned(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert returned("off") < 40  # glibc's default keeps the holes
    assert returned("on") >= 150  # the 20 freed blocks (160 MiB) go back
