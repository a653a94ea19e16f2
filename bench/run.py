"""The bench as a script: `python bench/run.py [--quick] [--steps N] [--model PRESET] [--output DIR]`.

The same as `lapidar bench` (src/lapidar/recipes/bench.py does the work): the plain transformers Trainer + peft
recipe and lapidar's default LoRA path on the same model shape, data and batch order, each in its own process;
writes OUTPUT/bench.json and prints tokens/s, peak RSS, time to the same validation loss and MFU.
"""

from __future__ import annotations

import sys

from lapidar.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", *sys.argv[1:]]
    main()
