"""Measure every training method on the same model and data: peak memory, speed and where the loss got to.

    python bench/methods.py [--model tiny-qwen2.5] [--steps 30] [--out bench/methods.json]

Each method runs `lapidar train` in its own process (so peak RSS is that process's), on the bundled claims data, with
the same seed, batch size and number of steps, one after the other. Speed is the median trained tokens/s of the
steps after the second (validation and checkpoint time excluded). Prints a markdown table for the README; run it on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ["lora", "lora-plus", "dora", "rslora", "pissa", "olora", "qlora", "qlora-8bit", "full", "freeze", "galore"]
EXTRA = {"galore": ["--optimizer", "galore"], "freeze": ["--freeze-trainable-layers", "2"]}


def step_speed(metrics: Path) -> float:
    """Median trained tokens/s of the logged steps after the first two (no validation or saving time in it)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    speeds = sorted(r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > 2)
    return speeds[len(speeds) // 2] if speeds else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen2.5")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="bench/methods.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            out = Path(tmp) / method
            cmd = [sys.executable, "-m", "lapidar", "train", "--model", args.model, "--data", "example:claims",
                   "--method", method, "--max-steps", str(args.steps), "--lr", "2e-3", "--batch-size", "8",
                   "--eval-steps", str(args.steps), "--log-steps", "1", "--seed", "0", "--output", str(out), *EXTRA.get(method, [])]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
            if proc.returncode != 0:
                rows.append({"method": method, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            s = json.loads((out / "summary.json").read_text())
            rows.append(
                {
                    "method": method,
                    "peak_memory_mib": s["peak_memory_mib"],
                    "tokens_per_s": round(step_speed(out / "metrics.jsonl"), 1),
                    "initial_val_loss": round(s["initial_val_loss"], 3),
                    "val_loss": round(s["best_val_loss"], 3),
                    "trainable": s.get("trainable_params"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()[0]
    result = {"model": args.model, "steps": args.steps, "load_average_after": round(load, 2), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| method | peak RSS (MiB) | tokens/s | val loss after {args.steps} steps |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed: {r['error']} | | |")
        else:
            print(f"| {r['method']} | {r['peak_memory_mib']:,.0f} | {r['tokens_per_s']:,.0f} | {r['val_loss']} |")


if __name__ == "__main__":
    main()
