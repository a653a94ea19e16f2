"""Sweep recipe: search space -> memory check of every combination -> trials (ordinary runs) -> table, best.yaml,
report.html.

`lapidar sweep CONFIG --trials N` reads the training config and its `sweep:` section
(`lapidar.training.sweep_space`), refuses up front the parameter combinations the memory estimate says cannot fit,
then asks an Optuna study for N trials. Each trial is an ordinary run directory (SWEEP_DIR/trial-0007) trained
in-process by `lapidar.recipes.train.main`, the one training path; a sink reports every validation loss to Optuna
and, when the pruner says so, sets the loop's StopRequest (the loop checkpoints and stops). The study lives in
storage (SQLite in SWEEP_DIR by default, any Optuna URL with --storage): a rerun continues it, and several
processes on one storage each ask it for a new trial number, so none runs a trial twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.config import TrainConfig
from lapidar.data.formats import bundled_example
from lapidar.errors import UserError
from lapidar.io import write_text
from lapidar.training.estimate import NO_FIT, estimate
from lapidar.training.events import Event, PlainSink, format_duration
from lapidar.training.loop import StopRequest, TrainingDiverged
from lapidar.training.observers import read_metrics
from lapidar.training.sweep_space import SweepSpec, describe, load_sweep_config, memory_combinations, trial_config

__all__ = ["PruningSink", "check_space_fits", "main", "open_study", "write_best_config", "write_report"]


class PruningSink:
    """Reports each evaluation's objective value to the Optuna trial; asks the loop to stop when it should be pruned.

    `key` is the eval record's key of the value: val_loss, or val_<metric> from generation evaluations.
    """

    def __init__(self, trial: Any, key: str, stop: StopRequest):
        self.trial, self.key, self.stop = trial, key, stop
        self.pruned_at: int | None = None

    def handle(self, event: Event) -> None:
        if event.kind != "eval" or self.key not in event.record or self.pruned_at is not None:
            return
        value = float(event.record[self.key])
        if not math.isfinite(value):
            return
        self.trial.report(value, event.step)
        if event.step > 0 and self.trial.should_prune():
            self.pruned_at = event.step
            self.stop.set(f"pruned at step {event.step}")

    def close(self, ok: bool) -> None:
        pass


# ---------------------------------------------------------------- before any trial


def check_space_fits(base: TrainConfig, spec: SweepSpec, console: Console) -> None:
    """Estimate every combination of the memory-relevant params on this machine; refuse those that cannot fit."""
    stats: dict[tuple, Any] = {}
    refused: list[str] = []
    combos = memory_combinations(base, spec)
    device = ""
    for combo in combos:
        cfg = base.model_copy(update=combo)
        key = (cfg.model, cfg.init, cfg.max_length, cfg.batch_size, cfg.padding_free, cfg.seed)
        try:
            report = estimate(cfg, stats=stats.get(key), probe=False, read_data=True)
        except UserError as e:
            console.print(f"[yellow]note:[/yellow] no memory estimate for the sweep: {escape(str(e))}")
            return
        stats[key] = report.stats
        device = report.device.name
        if report.verdict == NO_FIT:
            fix = report.fixes[0].change if report.fixes else "a larger machine"
            refused.append(
                f"{describe(combo) or 'the base config'} needs {report.estimate.total / 2**30:.2f} GiB of "
                f"{report.capacity / 2**30:.2f} GiB (cheapest change: {fix})"
            )
    console.print(
        f"Memory check: {len(combos) - len(refused)} of {len(combos)} combinations of "
        f"{', '.join(n for n in spec.params if any(n in c for c in combos)) or 'the base config'} fit on {device}"
    )
    if not refused:
        return
    message = (
        f"{len(refused)} parameter combinations cannot fit on {device}: {'; '.join(refused[:4])}"
        f"{f'; and {len(refused) - 4} more' if len(refused) > 4 else ''}; remove those values from sweep.params "
        "(or lower the range's high end), or set `force: true` in the config to try anyway"
    )
    if base.force:
        console.print(f"[yellow]warning (force):[/yellow] {escape(message)}")
        return
    raise UserError(message)


def _validation_file(base: TrainConfig, objective: str) -> Path | None:
    """The file `lapidar eval` scores for a metric objective (None for val_loss)."""
    if objective == "val_loss":
        return None
    if base.val_data:
        return Path(base.val_data)
    if base.data and base.data.startswith("example:"):
        return bundled_example(base.data.removeprefix("example:"))[1]
    raise UserError(
        f"objective {objective} is scored by `lapidar eval` on a validation file: set val_data in the config "
        "(e.g. from `lapidar data split FILE`)"
    )


def _storage(url: str, engine_kwargs: dict, attempts: int = 5) -> Any:
    """Optuna's RDB storage. Two processes opening a new database at once race to create its schema (one of them
    fails inserting the schema version); the loser retries and then finds the schema made."""
    import time

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(spec: SweepSpec, sweep_dir: Path, storage: str | None, study_name: str, max_steps: int) -> Any:
    """Create the study, or load it when it exists (a rerun, another process or machine on the same storage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    # Several processes on one SQLite file: wait for the lock rather than fail with "database is locked".
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        backend = _storage(url, kwargs)
        study = optuna.create_study(
            storage=backend,
            study_name=study_name,
            direction=spec.resolved_direction(),  # type: ignore[arg-type]
            sampler=spec.sampler.build(),
            pruner=spec.pruner.build(max_steps),
            load_if_exists=True,
        )
    except (ValueError, ImportError) as e:
        raise UserError(f"--storage {url}: {e}; use e.g. sqlite:///sweep.db or postgresql://user@host/db") from None
    if study.direction.name.lower() != spec.resolved_direction():
        raise UserError(
            f"study {study_name!r} in {url} is {study.direction.name.lower()}d, but the config says "
            f"{spec.resolved_direction()}; use another --study-name"
        )
    return study


# ---------------------------------------------------------------- one trial


def _run_trial(study: Any, base: TrainConfig, spec: SweepSpec, sweep_dir: Path, val_file: Path | None) -> dict:
    """Ask for a trial, train it as an ordinary run, tell the study how it went; returns a progress record."""
    import optuna

    from lapidar.recipes import train as train_recipe

    trial = study.ask()
    values = {name: p.suggest(trial, name) for name, p in spec.params.items()}
    run_dir = sweep_dir / f"trial-{trial.number:04d}"
    cfg = trial_config(base, values, run_dir)
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    run_dir.mkdir(parents=True, exist_ok=True)
    key = "val_loss" if spec.objective == "val_loss" else f"val_{spec.objective}"
    stop = StopRequest()
    sink = PruningSink(trial, key, stop)
    started = time.perf_counter()
    record: dict[str, Any] = {"number": trial.number, "params": values, "run_dir": str(run_dir)}
    # The run's own output (estimate, first example, progress, summary) goes to its train.log, not the terminal.
    with open(run_dir / "train.log", "w", encoding="utf-8") as log:
        log_console = Console(file=log, width=120)
        try:
            summary, _ = train_recipe.main(cfg, log_console, sinks=[PlainSink(log_console), sink], stop=stop)
        except TrainingDiverged as e:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return {**record, "state": "failed", "note": str(e).split(";")[0], "seconds": time.perf_counter() - started}
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        if sink.pruned_at is not None:
            trial.set_user_attr("pruned_at", sink.pruned_at)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return {**record, "state": "pruned", "step": sink.pruned_at, "seconds": time.perf_counter() - started}
        if stop.is_set() or summary.get("interrupted"):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise KeyboardInterrupt
        if val_file is None:
            # The loss of the weights the run saved (its best evaluation, else its last one).
            value = summary.get("best_val_loss")
            if value is None:  # a loss of exactly 0.0 is a value, not a missing one
                value = summary.get("final_val_loss")
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise UserError(
                    f"{run_dir}: the trial has no validation loss; a sweep needs validation rows: set val_data "
                    "or val_fraction in the config"
                )
        else:
            from lapidar.evaluation.evaluate import EvalSettings
            from lapidar.evaluation.evaluate import main as eval_main

            result = eval_main(
                EvalSettings(
                    target=str(run_dir), data=val_file, metrics=[spec.objective], probe="none", output=run_dir / "eval"
                ),
                log_console,
            )
            value = result["model"]["scores"][spec.objective]
    trial.set_user_attr("steps", summary["steps"])
    study.tell(trial, float(value))
    return {**record, "state": "complete", "value": float(value), "seconds": time.perf_counter() - started}


def _progress_line(record: dict, objective: str) -> str:
    head = f"trial {record['number']:>4}  {describe(record['params'])}  "
    tail = f"  {format_duration(record['seconds'])}"
    if record["state"] == "complete":
        return head + f"{objective} {record['value']:.4f}" + tail
    if record["state"] == "pruned":
        return head + f"pruned at step {record['step']}" + tail
    return head + f"failed: {record.get('note', '')}" + tail


# ---------------------------------------------------------------- the results


def _results_table(study: Any, objective: str) -> Table:
    table = Table(title=f"Study {study.study_name}: {len(study.trials)} trials")
    table.add_column("trial", justify="right")
    params = sorted({k for t in study.trials for k in t.params})
    for name in params:
        table.add_column(name)
    table.add_column(objective, justify="right")
    table.add_column("state")
    best = _best_trial(study)
    for t in study.trials:
        state = t.state.name.lower()
        if state == "pruned" and "pruned_at" in t.user_attrs:
            state = f"pruned at step {t.user_attrs['pruned_at']}"
        value = f"{t.value:.4f}" if t.value is not None else "-"
        mark = " best" if best is not None and t.number == best.number else ""
        table.add_row(str(t.number), *(describe({"": t.params[p]})[1:] if p in t.params else "-" for p in params),
                      value, state + mark)  # fmt: skip
    return table


def _best_trial(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def write_best_config(config_path: Path, base: TrainConfig, params: dict[str, Any], out: Path, note: str) -> Path:
    """The user's config keys with the best trial's values, no `sweep:` and no output: `lapidar train` takes it."""
    values = base.model_dump(exclude_unset=True)
    values.update(params)
    values.pop("output", None)
    TrainConfig(**values)  # what `lapidar train out` will validate
    header = f"# Best trial of `lapidar sweep {config_path}`: {note}\n# lapidar train {out}\n"
    write_text(out, header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    return out


def write_report(study: Any, out: Path, objective: str) -> Path:
    """An HTML page that works offline: optimisation history, parameter importances (>= 2 complete trials),
    parallel coordinates and the best trial's loss curves; plotly's JavaScript is inlined once."""
    import optuna
    import plotly.graph_objects as go

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figures: list[tuple[str, Any]] = []
    if complete:
        figures.append(("Optimisation history", optuna.visualization.plot_optimization_history(study)))
        figures.append(("Parallel coordinates", optuna.visualization.plot_parallel_coordinate(study)))
    if len(complete) >= 2 and any(len({str(t.params.get(k)) for t in complete}) > 1 for k in complete[0].params):
        # Importances need parameters that vary across complete trials.
        with contextlib.suppress(ValueError, RuntimeError):
            figures.append(("Parameter importances", optuna.visualization.plot_param_importances(study)))
    best = _best_trial(study)
    metrics = Path(best.user_attrs.get("run_dir", "")) / "metrics.jsonl" if best is not None else None
    if metrics is not None and metrics.is_file():
        rows = read_metrics(metrics)
        fig = go.Figure()
        for key, name in (("train_loss", "training loss"), ("val_loss", "validation loss")):
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name))
        fig.update_layout(xaxis_title="step", yaxis_title="loss")
        figures.append((f"Best trial ({best.number}) loss curves", fig))
    parts = []
    for i, (title, fig) in enumerate(figures):
        html = fig.to_html(full_html=False, include_plotlyjs=i == 0)  # the library once, inline: no CDN
        parts.append(f"<h2>{title}</h2>\n{html}")
    summary = f"{len(study.trials)} trials, {len(complete)} complete"
    if best is not None:
        summary += f"; best: trial {best.number}, {objective} {best.value:.4f}, {json.dumps(best.params)}"
    body = "\n".join(parts) or "<p>No complete trial yet.</p>"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {study.study_name}</title></head>"
        f"<body style='font-family:sans-serif'><h1>Sweep {study.study_name}</h1><p>{summary}</p>\n{body}</body></html>"
    )
    write_text(out, page)
    return out


# ---------------------------------------------------------------- the command


def main(
    config: Path,
    trials: int | None = None,
    output: Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
    console: Console | None = None,
) -> dict:
    """Run `lapidar sweep`; returns {"sweep_dir", "trials": progress records, "best": params or None}."""
    console = console or Console()
    base, spec = load_sweep_config(config)
    if base.nproc > 1:
        raise UserError(f"{config}: nproc {base.nproc}: sweep trials train in this process; set nproc: 1")
    val_file = _validation_file(base, spec.objective)
    sweep_dir = output or Path("sweeps") / config.stem
    sweep_dir.mkdir(parents=True, exist_ok=True)
    check_space_fits(base, spec, console)
    if spec.objective != "val_loss" and not base.eval_every:
        console.print(
            f"[yellow]note:[/yellow] objective {spec.objective}: no pruning without eval_every (set it to score "
            "generated answers during training)"
        )
    max_steps = base.max_steps or 1000
    study = open_study(spec, sweep_dir, storage, study_name or config.stem, max_steps)
    n = trials or spec.trials
    console.print(
        f"Sweep {study.study_name}: {n} trials into {sweep_dir} ({spec.resolved_direction()} {spec.objective}; "
        f"{len(study.trials)} trials already in the study)"
    )
    started = time.perf_counter()
    records = []
    for _ in range(n):
        if timeout is not None and time.perf_counter() - started > timeout:
            console.print(f"--timeout {timeout:g}s reached: no further trials")
            break
        record = _run_trial(study, base, spec, sweep_dir, val_file)
        records.append(record)
        console.print(escape(_progress_line(record, spec.objective)), highlight=False)
    console.print(_results_table(study, spec.objective))
    best = _best_trial(study)
    if best is not None:
        note = f"trial {best.number}, {spec.objective} {best.value:.4f}"
        path = write_best_config(config, base, best.params, sweep_dir / "best.yaml", note)
        console.print(f"Best: {note} -> {path}  (train it: lapidar train {path})")
    report = write_report(study, sweep_dir / "report.html", spec.objective)
    console.print(f"Report: {report}")
    return {"sweep_dir": str(sweep_dir), "trials": records, "best": best.params if best is not None else None}
