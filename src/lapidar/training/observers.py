"""Observers of a training run: metric logging (metrics.jsonl + TensorBoard, behind `events.MetricsSink`), early
stopping, loss plot.

They watch the loop; they never change its control flow except by answering `should_stop`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["EarlyStopping", "MetricsLog", "plot_losses", "read_metrics"]


class EarlyStopping:
    """Stop when validation loss has not improved by `min_delta` for `patience` evaluations."""

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = float("inf")
        self.best_step: int | None = None
        self.bad_evals = 0

    def update(self, step: int, val_loss: float) -> bool:
        """Record an evaluation; return True when it is the best so far."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = val_loss, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once `patience` evaluations in a row failed to improve."""
        return bool(self.patience) and self.bad_evals >= (self.patience or 0)

    @property
    def reason(self) -> str:
        """Why the run stopped, for summary.json and the diagnosis."""
        return (
            f"early stopping: validation loss did not improve for {self.patience} evaluations after step "
            f"{self.best_step}"
        )


class MetricsLog:
    """Append one JSON object per record to metrics.jsonl and mirror scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events an interrupted run wrote after the checkpoint it resumes from.
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

    def write(self, record: dict) -> None:
        """Log one record (must contain `step`)."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("step", "total_steps", "eta_s") and isinstance(value, int | float):
                    self._tb.add_scalar(
                        key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key, value, record["step"]
                    )

    def close(self) -> None:
        """Flush and close metrics.jsonl and the TensorBoard writer."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> list[dict]:
    """Read metrics.jsonl back."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(metrics_path: Path, out: Path, title: str) -> None:
    """Draw train and validation loss against step into a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#1f77b4")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#d62728")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
