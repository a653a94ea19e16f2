"""`lapidar sweep` end to end through the real CLI on tiny-qwen2.5: pruning, study storage, best.yaml that
`lapidar train` runs, the offline report, a rerun continuing the study, two processes sharing one storage."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest
import yaml

from tests.conftest import qa_rows, write_jsonl

pytestmark = [pytest.mark.recipe, pytest.mark.slow]

PAIRS = [
    (f"Claim {i}: a {item} was damaged on day {i}. Which team handles it?", f"The {team} team handles claim {i}.")
    for i, (item, team) in enumerate(
        [("windshield", "auto glass"), ("roof", "property"), ("phone", "gadget"), ("bike", "theft")] * 6
    )
]


def lapidar(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def sweep_config(root, trials: int = 4) -> str:
    data = write_jsonl(root / "claims.jsonl", qa_rows(PAIRS))
    config = {
        "model": "tiny-qwen2.5",
        "data": str(data),
        "val_fraction": 0.25,
        "method": "lora",
        "max_steps": 12,
        "batch_size": 6,
        "max_length": 128,
        "eval_steps": 3,
        "log_steps": 3,
        "patience": None,
        "sweep": {
            "trials": trials,
            "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 3},
            "sampler": {"type": "random", "seed": 3},
            # 1e-6 barely moves the loss, 5e-2 moves it fast: some trials are clearly worse than the first.
            "params": {"lr": {"type": "float", "low": 1.0e-6, "high": 5.0e-2, "log": True}},
        },
    }
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def states(db) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT number, state FROM trials").fetchall())


def test_sweep_prunes_writes_best_and_report_and_continues(tmp_path):
    config, out = sweep_config(tmp_path), tmp_path / "sweep"
    proc = lapidar("sweep", config, "--output", str(out))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4, proc.stdout
    assert any(re.search(r"pruned at step \d+", line) for line in lines), proc.stdout
    assert any(re.search(r"val_loss \d+\.\d{4}", line) for line in lines), proc.stdout
    assert [s for _, s in states(out / "study.db")].count("PRUNED") >= 1
    for n in range(4):
        assert (out / f"trial-{n:04d}" / "summary.json").is_file()

    best = yaml.safe_load((out / "best.yaml").read_text())
    assert "sweep" not in best and "output" not in best and 1e-6 <= best["lr"] <= 5e-2
    html = (out / "report.html").read_text()
    assert "Optimisation history" in html and "Parallel coordinates" in html and "loss curves" in html
    assert not re.search(r"<script[^>]*src=[\"']?https?://", html)  # plotly.js inlined: opens offline
    assert "plotly" in html.lower() and len(html) > 1_000_000

    trained = lapidar("train", str(out / "best.yaml"), "--output", str(tmp_path / "best-run"))
    assert (tmp_path / "best-run" / "adapter").is_dir(), trained.stdout

    again = lapidar("sweep", config, "--output", str(out), "--trials", "1")
    assert "4 trials already in the study" in again.stdout
    assert [n for n, _ in states(out / "study.db")] == [0, 1, 2, 3, 4]
    assert (out / "trial-0004" / "summary.json").is_file()


def test_two_processes_share_one_storage(tmp_path):
    config, db = sweep_config(tmp_path, trials=2), tmp_path / "shared.db"
    args = ["sweep", config, "--storage", f"sqlite:///{db}", "--study-name", "shared"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lapidar", *args, "--output", str(tmp_path / f"machine-{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ran = [
        {int(m) for m in re.findall(r"^trial\s+(\d+)", out, re.MULTILINE)} for out, _ in outputs
    ]  # trial numbers each process ran
    assert all(len(r) == 2 for r in ran) and not ran[0] & ran[1], ran
    assert ran[0] | ran[1] == {0, 1, 2, 3}
    assert [n for n, _ in states(db)] == [0, 1, 2, 3]
    for i, numbers in enumerate(ran):
        for n in numbers:
            assert (tmp_path / f"machine-{i}" / f"trial-{n:04d}" / "summary.json").is_file()
