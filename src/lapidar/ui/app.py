"""The HTTP side of `lapidar ui`: a FastAPI app serving the static page and the JSON API it calls (see API.md).

Every state lives in the workspace on disk (uploads, configs, run directories, job records), so a refreshed page
or a restarted server shows the same thing. Errors a user can fix are `UserError`s and come back as
400 {"error": "one line"}, the same line the CLI would print."""

from __future__ import annotations

import gc
import hmac
import json
import re
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic_core import PydanticUndefined

from lapidar.config.schema import GROUPS, TrainConfig, save_yaml, validate_config
from lapidar.errors import UserError
from lapidar.io import write_text
from lapidar.ui.chat import ChatModels, parse_chat_request
from lapidar.ui.feedback import Feedback, FeedbackFiles
from lapidar.ui.jobs import JobQueue
from lapidar.ui.workspace import MAX_UPLOAD_BYTES, Workspace

__all__ = ["BASIC_FIELDS", "EXAMPLES", "TASKS", "create_app", "schema"]

STATIC = Path(__file__).parent / "static"
COOKIE = "lapidar_token"
# The few knobs a newcomer needs; the rest of TrainConfig is shown as "advanced".
BASIC_FIELDS = (
    "model",
    "data",
    "val_data",
    "method",
    "lr",
    "epochs",
    "max_steps",
    "batch_size",
    "lora_r",
    "max_length",
)
# The optional `data clean` fixes the page offers (the safe ones - unicode, whitespace, empty and duplicate rows -
# always apply, as on the command line).
CLEAN_FIXES = {
    "near_duplicates": "Also drop near-duplicates (the first of each group is kept)",
    "mask_pii": "Replace emails, phones, cards, IBANs and ids by [EMAIL], [PHONE], ...",
    "strip_control_tokens": "Remove chat control tokens such as <|im_start|> from the text",
}
EXPORT_FORMATS = ("merged", "gguf", "ollama")  # what `lapidar export --format` accepts
EXAMPLES = [
    {"name": "example:claims", "description": "Insurance claim notes and the answers an adjuster wrote (bundled)."},
    {"name": "example:claims-routing", "description": "Claim note -> the team that handles it (bundled)."},
]

# The first-time path's "pick a task": each task is a training objective and, where one fits, a bundled example.
TASKS = [
    {
        "name": "assistant",
        "title": "Answer questions the way my team does",
        "description": "Questions (or requests) and the answers you want: an assistant for your field. Needs a file "
        "with a question column and an answer column, or chat conversations.",
        "config": {"objective": "sft"},
        "example": "example:claims",
    },
    {
        "name": "classify",
        "title": "Sort texts into categories",
        "description": "A text and the label it should get (a team, a priority, a category): the model learns to "
        "answer with the label.",
        "config": {"objective": "sft"},
        "example": "example:claims-routing",
    },
    {
        "name": "documents",
        "title": "Learn the language of my documents",
        "description": "Plain text (manuals, reports, policies) the model reads to pick up your vocabulary and "
        "style; it does not learn to answer questions from this alone.",
        "config": {"objective": "pretrain"},
        "example": None,
    },
    {
        "name": "preferences",
        "title": "Prefer good answers over bad ones",
        "description": "For each question a better and a worse answer (or answers marked 👍/👎): the model learns "
        "which kind to give. Best after an assistant run.",
        "config": {"objective": "dpo"},
        "example": None,
    },
]


# ---------------------------------------------------------------- schema


def _field_type(annotation: Any) -> tuple[str, list[Any] | None]:
    """The form control a TrainConfig annotation needs: str|int|float|bool|list|choice (+ the choices)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_type(args[0])
    if origin is list or annotation is list:
        return "list", None
    for kind in (bool, int, float):  # bool first: it is a subclass of int
        if annotation is kind:
            return kind.__name__, None
    return "str", None


def schema() -> dict[str, Any]:
    """GET /api/schema: TrainConfig's fields, in the groups of docs/config.md."""
    groups: dict[str, list[dict[str, Any]]] = {key: [] for key in GROUPS}
    for name, info in TrainConfig.model_fields.items():
        kind, choices = _field_type(info.annotation)
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = None
        field: dict[str, Any] = {
            "name": name,
            "type": kind,
            "default": default,
            "help": info.description or "",
            "basic": name in BASIC_FIELDS,
            "nullable": type(None) in typing.get_args(info.annotation),
        }
        if choices is not None:
            field["choices"] = choices
        for meta in info.metadata:  # annotated_types.Ge/Gt/Le/Lt
            for attr, key in (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max")):
                value = getattr(meta, attr, None)
                if value is not None:
                    field[key] = value
                    field[f"{key}_exclusive"] = attr in ("gt", "lt")
        extra = info.json_schema_extra
        group = str(extra["group"]) if isinstance(extra, dict) else "output"
        groups.setdefault(group, []).append(field)
    return {
        "groups": [
            {"key": key, "title": GROUPS.get(key, key), "fields": fields} for key, fields in groups.items() if fields
        ]
    }


def _validate(config: Any, where: str = "config") -> TrainConfig:
    """A TrainConfig from the page's dict; UserError naming each bad field."""
    if not isinstance(config, dict):
        raise UserError(f"{where}: expected an object of config keys, got {type(config).__name__}")
    return validate_config({str(k).replace("-", "_"): v for k, v in config.items()}, where)


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The fields that differ from the defaults (what a readable YAML holds), in declaration order."""
    return cfg.model_dump(exclude_defaults=True)


# ---------------------------------------------------------------- info, data


def _info(ws: Workspace) -> dict[str, Any]:
    from lapidar import __version__
    from lapidar.methods import METHODS
    from lapidar.models.presets import PRESETS

    return {
        "version": __version__,
        "workspace": str(ws.root),
        "machine": _machine(),
        "presets": [
            {"name": p.name, "description": p.description, "params": p.n_params, "kind": p.kind}
            for p in PRESETS.values()
        ],
        "methods": [{"name": name, "when": m.when} for name, m in METHODS.items()],
        "examples": EXAMPLES,
        "tasks": TASKS,
    }


def _machine() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "device": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    import os

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"device": "cpu", "memory_gib": round(memory, 1) if memory else None, "bf16": False}


def _data_spec(ws: Workspace, path: str) -> str:
    """`example:NAME` as it is, anything else resolved inside the workspace."""
    if path.startswith("example:"):
        return path
    p = ws.safe_path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file in the workspace; upload it first (GET /api/data lists the files)")
    return str(p)


def _inspect(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """What `lapidar data check` reports, as JSON, plus the detected format and column mapping."""
    from lapidar.commands import quiet_libraries
    from lapidar.data.formats import load_spec
    from lapidar.data.quality import check_dataset
    from lapidar.models.loading import tokenizer_for

    path = str(body.get("path") or "")
    spec = _data_spec(ws, path)
    max_length = int(body.get("max_length") or 1024)
    gc.disable()  # as `data check` does: millions of small acyclic objects, the collector only costs time
    try:
        ds, val = load_spec(spec, body.get("format"), body.get("columns"))
        quiet_libraries()
        report = check_dataset(ds, tokenizer_for(str(body.get("model") or "tiny-qwen2.5")), max_length, val)
    finally:
        gc.enable()
    examples = [
        {"messages": ex.messages, "kind": ex.kind, "ref": ex.ref, "segments": _segments(ex)} for ex in ds.examples[:3]
    ]
    return {
        "path": path,
        "format": ds.fmt,
        "reason": ds.reason,
        "kind": ds.kind,
        "columns": ds.columns,
        "rows": len(ds.examples),
        "examples": examples,
        "report": report.to_dict(),
        "usable": report.usable,
        "fixes": [{"key": key, "label": label} for key, label in CLEAN_FIXES.items()],
    }


def _rows(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """The raw rows a report finding names ("line 4", "row 7"), and how each reads as a conversation."""
    from lapidar.data.formats import load_spec

    path = str(body.get("path") or "")
    refs = [str(r) for r in (body.get("refs") or [])][:50]
    if not refs:
        raise UserError('refs: name the rows to show, e.g. {"refs": ["line 4"]} (a finding lists them)')
    ds, _ = load_spec(_data_spec(ws, path), body.get("format"), body.get("columns"))
    by_ref = {row.ref: (row, ex) for row, ex in zip(ds.rows, ds.examples, strict=True)}
    out: list[dict[str, Any]] = []
    for ref in refs:
        if ref not in by_ref:  # e.g. a row of the validation file, which a finding can name too
            out.append({"ref": ref, "value": None, "notes": [f"not a row of {path}"], "segments": []})
            continue
        row, ex = by_ref[ref]
        out.append({"ref": ref, "value": row.value, "notes": list(row.notes), "segments": _segments(ex)})
    return {"path": path, "rows": out}


def _segments(ex: Any) -> list[dict[str, Any]]:
    """An example in ChatML (the Qwen2.5 instruct template), each piece marked with whether it carries loss."""
    from lapidar.data.formats import trains

    if ex.kind == "text":
        return [{"text": ex.text or "", "learned": True}]
    conv = ex.conversations()[0] if ex.conversations() else ex.messages
    out = []
    for m in conv:
        # Preference and feedback rows train on their answer; plain rows follow each turn's weight.
        learned = trains(m) if ex.kind == "sft" else m["role"] == "assistant"
        out.append({"text": f"<|im_start|>{m['role']}\n", "learned": False})
        out.append({"text": m["content"], "learned": learned})
        out.append({"text": "<|im_end|>\n", "learned": learned})
    return out


def _out_name(spec: str) -> str:
    """The stem new files made from `spec` are named after (data/<stem>-clean.jsonl, data/<stem>-split/)."""
    return spec.removeprefix("example:") if spec.startswith("example:") else Path(spec).stem


def _clean(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """`lapidar data clean` with the safe defaults plus the chosen fixes; the input is never changed."""
    from lapidar.data.clean import CleanOptions
    from lapidar.data.clean import clean as run_clean
    from lapidar.data.formats import load_spec
    from lapidar.data.readers import write_rows

    path = str(body.get("path") or "")
    spec = _data_spec(ws, path)
    fixes = body.get("fixes") or []
    unknown = [f for f in fixes if f not in CLEAN_FIXES]
    if unknown:
        raise UserError(f"unknown fix {unknown[0]!r}; choose from {', '.join(CLEAN_FIXES)}")
    ds, _ = load_spec(spec, body.get("format"), body.get("columns"))
    opts = CleanOptions(
        near_duplicates="near_duplicates" in fixes,
        mask_pii="mask_pii" in fixes,
        strip_control_tokens="strip_control_tokens" in fixes,
    )
    result = run_clean(ds, opts)
    suffix = Path(spec).suffix.lower() if Path(spec).suffix else ".jsonl"
    out = ws.dir("data") / f"{_out_name(path)}-clean{suffix}"
    log = ws.dir("data") / f"{_out_name(path)}-clean.log.jsonl"
    write_rows(out, result.rows)
    write_text(log, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in result.log))
    changes = [f"{what}: {n} rows" for what, n in sorted(result.counts.items())]
    changes.append(
        f"kept {len(result.rows)} of {len(ds.rows)} rows ({result.dropped} dropped, {result.edited_rows} edited); "
        f"every change is listed in {ws.relative(log)}"
    )
    return {"path": ws.relative(out), "log": ws.relative(log), "changes": changes}


def _split(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """`lapidar data split`: duplicates and shared prompts stay on one side, stratified by label."""
    from lapidar.data.formats import load_spec
    from lapidar.data.readers import write_rows
    from lapidar.data.split import split as run_split

    path = str(body.get("path") or "")
    spec = _data_spec(ws, path)
    try:
        fraction = float(body.get("fraction", 0.1))
    except (TypeError, ValueError):
        raise UserError(f"fraction: expected a number between 0 and 1, got {body.get('fraction')!r}") from None
    ds, _ = load_spec(spec, body.get("format"), body.get("columns"))
    result = run_split(ds, fraction, int(body.get("seed") or 0))
    suffix = Path(spec).suffix.lower() if Path(spec).is_file() else ".jsonl"
    out = ws.dir("data") / f"{_out_name(path)}-split"
    train, val = out / f"train{suffix}", out / f"validation{suffix}"
    write_rows(train, [ds.rows[i].value for i in result.train])
    write_rows(val, [ds.rows[i].value for i in result.val])
    return {
        "train": ws.relative(train),
        "validation": ws.relative(val),
        "train_rows": len(result.train),
        "validation_rows": len(result.val),
    }


def _fix_changes(change: str) -> dict[str, Any] | None:
    """`--batch-size 2 --grad-accum 4 (same effective batch)` -> {batch_size: 2, grad_accum: 4}; None when a flag
    is not a TrainConfig field (e.g. --gpus, which only `lapidar estimate` has)."""
    words = " + ".join(part.split(" (")[0] for part in change.split(" + ")).replace("+", " ").split()
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        name = words[i].removeprefix("--").replace("-", "_")
        if not words[i].startswith("--") or name not in TrainConfig.model_fields:
            return None
        has_value = i + 1 < len(words) and not words[i + 1].startswith("--")
        value: Any = words[i + 1] if has_value else True
        kind, _ = _field_type(TrainConfig.model_fields[name].annotation)
        if has_value and kind in ("int", "float"):
            value = int(value) if kind == "int" else float(value)
        out[name] = value
        i += 2 if has_value else 1
    return out


def _estimate(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """`lapidar estimate` for the form's config on this machine, fixes as field changes the form can apply."""
    from lapidar.training.estimate import estimate as run_estimate

    config = dict(body.get("config") or {})
    for key in ("data", "val_data"):  # relative to the workspace, as the job will run it
        if isinstance(config.get(key), str) and config[key]:
            config[key] = _data_spec(ws, config[key])
    report = run_estimate(_validate(config)).to_json()
    fixes = []
    for fix in report["fixes"]:
        changes = _fix_changes(fix["change"])
        if changes is not None:
            fixes.append({"label": fix["change"], "changes": changes, "peak_gib": fix["peak_gib"]})
    seconds = report.get("epoch_seconds")
    return {
        "verdict": report["verdict"].replace(" ", "-"),  # fits | tight | does-not-fit (a CSS class too)
        "peak_gib": report["peak_gib"],
        "capacity_gib": report["capacity_gib"],
        "device": report["device"],
        "seconds": seconds,
        "fixes": fixes,
        "notes": report["notes"],
        "breakdown_gib": report["breakdown_gib"],
    }


# ---------------------------------------------------------------- runs


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or being written by the training process right now
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _run_status(queue: JobQueue, name: str, run_dir: Path) -> str:
    job = queue.active_for(name)
    if job is not None:
        return str(job["status"])
    summary = _read_json(run_dir / "summary.json")
    if summary is not None:
        return "stopped" if summary.get("interrupted") else "done"
    last = [j for j in queue.all() if j.get("run") == name]
    return str(last[-1]["status"]) if last else "unknown"


def _run_row(ws: Workspace, queue: JobQueue, run_dir: Path) -> dict[str, Any]:
    name = run_dir.name
    summary = _read_json(run_dir / "summary.json") or {}
    config = _read_yaml(run_dir / "config.yaml") or _read_yaml(ws.dir("configs") / f"{name}.yaml") or {}
    return {
        "name": name,
        "status": _run_status(queue, name, run_dir),
        "model": summary.get("model") or config.get("model"),
        "method": summary.get("method") or config.get("method"),
        "data": config.get("data"),
        "objective": summary.get("objective") or config.get("objective"),
        "best_val_loss": summary.get("best_val_loss"),
        "steps": summary.get("steps"),
        "total": summary.get("total_steps_planned"),
        "elapsed": summary.get("wall_time_s"),
        "created": run_dir.stat().st_mtime,
    }


def _metrics_from(path: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    """Complete metrics.jsonl lines from line `start` (a half-written last line waits for the next poll)."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows, start
    n = start
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if not line.endswith("\n"):
                break
            n = i + 1
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows, n


def _log_from(path: Path, start: int) -> tuple[str, int]:
    if not path.is_file():
        return "", start
    size = path.stat().st_size
    start = min(max(start, 0), size)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(2 * 2**20)  # at most 2 MiB a poll; the page asks again from next_log
    return data.decode("utf-8", errors="replace"), start + len(data)


def _run_detail(ws: Workspace, queue: JobQueue, name: str, metrics_from: int, log_from: int) -> dict[str, Any]:
    run_dir = ws.run_dir(name)
    if not run_dir.is_dir():
        job = queue.active_for(name)
        if job is None:
            raise UserError(f"no run {name!r} in {ws.dir('runs')}; GET /api/runs lists them")
        # Queued behind another job (or just starting): nothing on disk yet but its config.
        return {
            "name": name,
            "status": job["status"],
            "config": _read_yaml(ws.dir("configs") / f"{name}.yaml"),
            "summary": None,
            "run": None,
            "metrics": [],
            "next_metrics": metrics_from,
            "log": "",
            "next_log": log_from,
            "progress": {"step": None, "total": None, "tokens_per_s": None, "eta_s": None},
            "checkpoints": [],
            "job": job,
            "eval": None,
            "eval_rows": [],
            "exports": [],
            "diagnosis": None,
        }
    metrics, next_metrics = _metrics_from(run_dir / "metrics.jsonl", max(metrics_from, 0))
    log, next_log = _log_from(run_dir / "train.log", log_from)
    summary = _read_json(run_dir / "summary.json")
    job = queue.active_for(name)
    return {
        "name": name,
        "status": _run_status(queue, name, run_dir),
        "config": _read_yaml(run_dir / "config.yaml") or _read_yaml(ws.dir("configs") / f"{name}.yaml"),
        "summary": summary,
        "run": _read_json(run_dir / "lapidar_run.json"),
        "metrics": metrics,
        "next_metrics": next_metrics,
        "log": log,
        "next_log": next_log,
        "progress": _progress(summary, _last_step(run_dir / "metrics.jsonl", metrics), job),
        "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").glob("*") if p.is_dir()),
        "job": job,
        "eval": _read_json(run_dir / "eval" / "eval.json"),
        "eval_rows": _eval_rows(run_dir / "eval" / "predictions.jsonl"),
        "exports": _exports(ws, run_dir),
        "diagnosis": _diagnosis(run_dir) if summary is not None else None,
    }


_FLAG = re.compile(r"--([a-z][a-z0-9-]*)(?:\s+(-?[0-9][0-9.e+-]*|true|false))?")


def _next_step(text: str) -> dict[str, Any]:
    """The config changes a diagnosis suggestion names (`--lr 2e-5`, `--warmup-ratio 0.03`), for a button that
    starts the run again with them; flags that are not TrainConfig fields are left out."""
    changes: dict[str, Any] = {}
    for flag, raw in _FLAG.findall(text):
        name = flag.replace("-", "_")
        if name in changes or name not in TrainConfig.model_fields:
            continue
        kind, _ = _field_type(TrainConfig.model_fields[name].annotation)
        try:
            if kind == "bool":
                changes[name] = raw != "false"
            elif kind == "int" and raw:
                changes[name] = int(float(raw))
            elif kind == "float" and raw:
                changes[name] = float(raw)
        except ValueError:
            continue
    return changes


def _diagnosis(run_dir: Path) -> list[dict[str, Any]]:
    """The diagnosis `lapidar train` prints for a finished run: findings in plain words, each with the changes its suggestion names."""
    from lapidar.evaluation.diagnosis import diagnose

    try:
        findings = diagnose(run_dir)
    except (UserError, OSError, ValueError):
        return []
    return [
        {
            "severity": f.severity,
            "title": f.title,
            "evidence": f.evidence,
            "suggestion": f.suggestion,
            "code": f.code,
            "step": f.step,
            "next_step": _next_step(f.suggestion),
        }
        for f in findings
    ]


def _last_step(path: Path, new_rows: list[dict[str, Any]], tail_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The newest step row: among this poll's rows, else among the file's last `tail_bytes` (a poll with nothing
    new reads the end of metrics.jsonl, not all of it: the page polls every second)."""

    def is_step(m: dict[str, Any]) -> bool:
        return "total_steps" in m or "train_loss" in m

    steps = [m for m in new_rows if is_step(m)]
    if not steps and path.is_file():
        start = max(0, path.stat().st_size - tail_bytes)
        with path.open("rb") as f:
            f.seek(start)
            # whole lines only: not the one the seek cut into, nor a last one still being written
            lines = f.read().decode("utf-8", errors="replace").split("\n")[1 if start else 0 : -1]
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and is_step(row):
                return row
    return steps[-1] if steps else {}


def _progress(summary: dict[str, Any] | None, last: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """Step, total, tokens/s and, while a job runs, the time left (as the training process estimated it)."""
    return {
        "step": (summary or {}).get("steps", last.get("step")),
        "total": (summary or {}).get("total_steps_planned", last.get("total_steps")),
        "tokens_per_s": last.get("tokens_per_s"),
        "eta_s": last.get("eta_s") if summary is None and job is not None else None,
    }


def _eval_rows(path: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The first answers of the last `lapidar eval`, side by side: question, reference, base and trained answer."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(rows) >= limit:
                break
            try:
                r = json.loads(line)
            except ValueError:
                continue
            prompt = r.get("prompt") or []
            question = next((m.get("content") for m in reversed(prompt) if m.get("role") == "user"), "")
            rows.append(
                {
                    "source": r.get("source"),
                    "question": question,
                    "reference": r.get("reference"),
                    "base": (r.get("base") or {}).get("prediction"),
                    "trained": r.get("prediction"),
                }
            )
    return rows


def _exports(ws: Workspace, run_dir: Path) -> list[dict[str, Any]]:
    """The folders `lapidar export` wrote (RUN/export/FORMAT[-QUANT]), their equivalence checks, and what to
    download: the .gguf file for GGUF/Ollama, the whole folder as a zip for merged weights."""
    out = []
    for d in sorted((run_dir / "export").glob("*")):
        if not d.is_dir():
            continue
        meta = _read_json(d / "lapidar_export.json") or {}
        gguf = sorted(d.glob("*.gguf"))
        checks = meta.get("checks") or []
        out.append(
            {
                "path": ws.relative(d),
                "format": meta.get("format") or d.name.split("-")[0],
                "quant": meta.get("quant") or (d.name.split("-", 1)[1] if "-" in d.name else None),
                "complete": bool(meta),  # lapidar export writes lapidar_export.json last
                "checks": checks,
                "passed": bool(checks) and all(c.get("ok") or not c.get("required", True) for c in checks),
                "download": ws.relative(gguf[0]) if gguf else f"{ws.relative(d)}?zip=1",
            }
        )
    return out


def _zip(ws: Workspace, folder: Path) -> Path:
    """exports/<folder path with - for />.zip holding `folder` (stored, not compressed: weights do not shrink),
    made again only when the folder changed since."""
    import zipfile

    target = ws.dir("exports") / (ws.relative(folder).replace("/", "-") + ".zip")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    newest = max((p.stat().st_mtime for p in files), default=0.0)
    if target.is_file() and target.stat().st_mtime >= newest:
        return target
    tmp = target.with_name(f".{target.name}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for p in files:
            z.write(p, Path(folder.name) / p.relative_to(folder))
    tmp.replace(target)
    return target


def _compare(ws: Workspace, names: list[str]) -> dict[str, Any]:
    """Loss curves of several runs and the config fields in which they differ."""
    curves: dict[str, list[dict[str, Any]]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for name in names:
        run_dir = ws.run_dir(name)
        if not run_dir.is_dir():
            raise UserError(f"no run {name!r} in {ws.dir('runs')}; GET /api/runs lists them")
        rows, _ = _metrics_from(run_dir / "metrics.jsonl", 0)
        curves[name] = [
            {"step": m["step"], "train_loss": m.get("train_loss"), "val_loss": m.get("val_loss")}
            for m in rows
            if "step" in m and ("train_loss" in m or "val_loss" in m)
        ]
        configs[name] = _read_yaml(run_dir / "config.yaml") or {}
    fields = list(dict.fromkeys(k for c in configs.values() for k in c))
    diff = [
        {"field": f, "values": {n: configs[n].get(f) for n in names}}
        for f in fields
        if len({json.dumps(configs[n].get(f), sort_keys=True, default=str) for n in names}) > 1
    ]
    return {"curves": curves, "config_diff": diff}


def _feedback_job(ws: Workspace, jobs: JobQueue, body: dict[str, Any]) -> dict[str, Any]:
    """Queue a KTO (👍/👎) or DPO (corrected answers) run on a run's feedback, starting from that run's weights.

    An adapter run is first exported as a merged model (RUN/export/merged, queued before the training job); a full
    or freeze run's weights are a model directory already. The new run keeps the rated run's settings except model,
    data and objective, and holds no validation split (a few dozen votes are all training data)."""
    run = Workspace.check_name(str(body.get("run") or ""), "run name")
    run_dir = ws.run_dir(run)
    meta = _read_json(run_dir / "lapidar_run.json")
    if meta is None:
        raise UserError(f"no run {run!r} with weights in {ws.dir('runs')}; GET /api/runs lists them")
    objective = str(body.get("objective") or "kto")
    files = FeedbackFiles(ws, run)
    data = {"kto": files.kto, "dpo": files.pairs}.get(objective)
    if data is None:
        raise UserError(f"objective {objective!r}: feedback trains with kto (👍/👎) or dpo (corrected answers)")
    if not data.is_file():
        what = "no 👍/👎 yet" if objective == "kto" else "no corrected answers yet (👎 with a better answer)"
        raise UserError(f"run {run!r} has {what}: chat with it and rate some answers first")
    if meta.get("weights") == "adapter":
        merged = run_dir / "export" / "merged"
        if not (merged / "config.json").is_file() and not any(
            j["kind"] == "export" and j["status"] in ("queued", "running") and j["run"] == run for j in jobs.all()
        ):
            argv = [sys.executable, "-m", "lapidar", "export", f"runs/{run}", "--format", "merged"]
            jobs.submit("export", argv, run, run_dir / "export.log")
        model = f"runs/{run}/export/merged"
    else:
        model = f"runs/{run}/{meta.get('weights') or 'model'}"
    base = _read_yaml(run_dir / "config.yaml") or {}
    keep = {k: v for k, v in base.items() if k in TrainConfig.model_fields and k not in ("output", "name", "val_data")}
    config = keep | {"model": model, "data": ws.relative(data), "objective": objective, "val_fraction": 0.0}
    config.pop("max_steps", None)
    cfg = _validate(config)
    name = Workspace.check_name(str(body.get("name") or f"{run}-{objective}-{time.strftime('%H%M%S')}"), "run name")
    if ws.run_dir(name).exists() or jobs.active_for(name):
        raise UserError(f"run {name!r} exists already in {ws.dir('runs')}; choose another name")
    values = _config_dict(cfg)
    values["model"] = model  # kept even where it equals a default
    save_yaml(values, ws.dir("configs") / f"{name}.yaml")
    argv = [sys.executable, "-m", "lapidar", "train", f"configs/{name}.yaml", "--output", f"runs/{name}"]
    return jobs.submit("train", argv, name, ws.run_dir(name) / "train.log")


# ---------------------------------------------------------------- app


def create_app(
    workspace: Path, token: str | None = None, queue: JobQueue | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES
) -> Any:
    """The web app over `workspace`; with `token`, every request needs it (Bearer header or cookie)."""
    ws = Workspace(Path(workspace))
    jobs = queue or JobQueue(ws)
    app = FastAPI(title="lapidar ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace = ws
    app.state.jobs = jobs
    chat_models = ChatModels(ws)
    feedback = Feedback(ws)

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Response:
        if token is None:
            return await call_next(request)
        given = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        given = given or request.cookies.get(COOKIE) or None
        query = request.query_params.get("token")
        if request.url.path == "/" and query is not None and hmac.compare_digest(query, token):
            response = await call_next(request)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        if given is None or not hmac.compare_digest(given, token):
            return JSONResponse(
                {"error": "this lapidar ui needs its token: open the address `lapidar ui` printed (/?token=...)"},
                status_code=401,
            )
        return await call_next(request)

    @app.exception_handler(UserError)
    async def user_error(_request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/app.js", include_in_schema=False)
    def app_js() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/app.css", include_in_schema=False)
    def app_css() -> FileResponse:
        return FileResponse(STATIC / "app.css", media_type="text/css")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return _info(ws)

    @app.get("/api/schema")
    def get_schema() -> dict[str, Any]:
        return schema()

    @app.get("/api/data")
    def data_list() -> dict[str, Any]:
        return {"files": ws.data_files(), "examples": EXAMPLES}

    @app.post("/api/data/upload")
    async def upload(file: UploadFile) -> JSONResponse:
        target = ws.upload_target(file.filename or "")
        # Streamed to a hidden temporary file, renamed at the end: a half-uploaded file never appears under its
        # name, and a big upload is never held in memory.
        tmp = target.with_name(f".{target.name}.part")
        size = 0
        try:
            with tmp.open("wb") as out:
                while chunk := await file.read(2**20):
                    size += len(chunk)
                    if size > max_upload_bytes:
                        return JSONResponse(
                            {
                                "error": f"{file.filename}: larger than the upload limit of "
                                f"{max_upload_bytes / 2**20:g} MiB; copy it into {ws.dir('data')} instead, "
                                "or train from the command line (lapidar train)"
                            },
                            status_code=413,
                        )
                    out.write(chunk)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return JSONResponse({"path": ws.relative(target), "size": size})

    @app.post("/api/data/inspect")
    def inspect(body: dict[str, Any]) -> dict[str, Any]:
        return _inspect(ws, body)

    @app.post("/api/data/rows")
    def data_rows(body: dict[str, Any]) -> dict[str, Any]:
        return _rows(ws, body)

    @app.post("/api/data/clean")
    def clean(body: dict[str, Any]) -> dict[str, Any]:
        return _clean(ws, body)

    @app.post("/api/data/split")
    def split(body: dict[str, Any]) -> dict[str, Any]:
        return _split(ws, body)

    @app.post("/api/estimate")
    def estimate(body: dict[str, Any]) -> dict[str, Any]:
        return _estimate(ws, body)

    @app.post("/api/config/yaml")
    def config_yaml(body: dict[str, Any]) -> dict[str, Any]:
        cfg = _validate(body.get("config"))
        return {"yaml": yaml.safe_dump(_config_dict(cfg), sort_keys=False, allow_unicode=True)}

    @app.post("/api/config/parse")
    def config_parse(body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("yaml")
        if not isinstance(text, str):
            raise UserError('POST /api/config/parse: send {"yaml": "..."} with the YAML text')
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"config{line}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
        if isinstance(loaded, dict) and "sweep" in loaded:
            raise UserError("config: the `sweep:` section is a search space for `lapidar sweep`; remove it to train")
        cfg = _validate(loaded)
        return {"config": cfg.model_dump()}

    @app.post("/api/jobs")
    def submit(body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("kind")
        if kind == "train":
            cfg = _validate(body.get("config"))
            default = time.strftime("run-%Y%m%d-%H%M%S")  # a name nobody gave: unique to the second
            name = Workspace.check_name(str(body.get("name") or cfg.name or default), "run name")
            run_dir = ws.run_dir(name)
            if run_dir.exists() or jobs.active_for(name):
                raise UserError(f"run {name!r} exists already in {ws.dir('runs')}; choose another name")
            if cfg.data and not cfg.data.startswith("example:"):
                ws.safe_path(cfg.data)  # the data must be inside the workspace (job cwd = workspace root)
            if cfg.val_data:
                ws.safe_path(cfg.val_data)
            values = _config_dict(cfg)
            values.pop("output", None)  # the run directory is the UI's choice: runs/NAME
            config_path = ws.dir("configs") / f"{name}.yaml"
            save_yaml(values, config_path)
            argv = [sys.executable, "-m", "lapidar", "train", f"configs/{name}.yaml", "--output", f"runs/{name}"]
            job = jobs.submit("train", argv, name, run_dir / "train.log")
        elif kind == "resume":
            name = Workspace.check_name(str(body.get("run") or ""), "run name")
            run_dir = ws.run_dir(name)
            if not run_dir.is_dir():
                raise UserError(f"no run {name!r} in {ws.dir('runs')}; GET /api/runs lists them")
            argv = [sys.executable, "-m", "lapidar", "train", "--resume", f"runs/{name}"]
            job = jobs.submit("resume", argv, name, run_dir / "train.log")
        elif kind == "eval":
            name = Workspace.check_name(str(body.get("run") or ""), "run name")
            run_dir = ws.run_dir(name)
            if not run_dir.is_dir():
                raise UserError(f"no run {name!r} in {ws.dir('runs')}; GET /api/runs lists them")
            data = str(body.get("data") or "")
            _data_spec(ws, data)  # inside the workspace and present
            argv = [sys.executable, "-m", "lapidar", "eval", f"runs/{name}", "--data", data, "--compare-base"]
            job = jobs.submit("eval", argv, name, run_dir / "eval.log")
        elif kind == "export":
            name = Workspace.check_name(str(body.get("run") or ""), "run name")
            run_dir = ws.run_dir(name)
            if not run_dir.is_dir():
                raise UserError(f"no run {name!r} in {ws.dir('runs')}; GET /api/runs lists them")
            fmt = str(body.get("format") or "merged")
            if fmt not in EXPORT_FORMATS:
                raise UserError(f"export format {fmt!r}: choose {', '.join(EXPORT_FORMATS)}")
            argv = [sys.executable, "-m", "lapidar", "export", f"runs/{name}", "--format", fmt]
            if fmt != "merged" and body.get("quant"):
                argv += ["--quant", str(body["quant"])]
            job = jobs.submit("export", argv, name, run_dir / "export.log")
        elif kind == "feedback":
            job = _feedback_job(ws, jobs, body)
        else:
            raise UserError(f"job kind {kind!r} is not supported; use train, resume, eval, export or feedback")
        return {"job": job}

    @app.get("/api/jobs")
    def list_jobs() -> dict[str, Any]:
        jobs.tick()
        return {"jobs": jobs.all()}

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: str) -> dict[str, Any]:
        return {"job": jobs.stop(job_id)}

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        jobs.tick()
        dirs = sorted((d for d in ws.dir("runs").iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
        return {"runs": [_run_row(ws, jobs, d) for d in reversed(dirs)]}

    @app.get("/api/runs/{name}")
    def run(name: str, metrics_from: int = 0, log_from: int = 0) -> dict[str, Any]:
        jobs.tick()
        return _run_detail(ws, jobs, name, metrics_from, log_from)

    @app.get("/api/compare")
    def compare(runs: str = "") -> dict[str, Any]:
        names = [n for n in runs.split(",") if n]
        if len(names) < 2:
            raise UserError("compare: name two or more runs, e.g. /api/compare?runs=first,second")
        return _compare(ws, names)

    @app.post("/api/chat")
    async def chat(body: dict[str, Any]) -> StreamingResponse:
        run, side, messages, max_tokens, temperature = parse_chat_request(body)
        if not (ws.run_dir(run) / "lapidar_run.json").is_file():
            raise UserError(f"no run {run!r} with a model yet in {ws.dir('runs')}; GET /api/runs lists them")

        async def events() -> Any:
            # Server-sent events: one JSON object per `data:` line; an error after the stream began is an event too.
            try:
                async for event in chat_models.stream(run, side, messages, max_tokens, temperature):
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            except UserError as e:
                yield f"data: {json.dumps({'error': str(e)}, ensure_ascii=False)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.post("/api/feedback")
    def vote(body: dict[str, Any]) -> dict[str, Any]:
        return feedback.vote(body)

    @app.get("/api/feedback")
    def feedback_summary(run: str = "") -> dict[str, Any]:
        name = Workspace.check_name(run, "run name")
        return feedback.summary(name)

    @app.get("/api/files/{path:path}")
    def download(path: str, zip: int = 0) -> FileResponse:
        p = ws.safe_path(path)
        if zip and p.is_dir():
            archive = _zip(ws, p)
            return FileResponse(archive, filename=f"{p.parent.parent.name}-{p.name}.zip")
        if not p.is_file():
            raise UserError(f"{path}: no such file in the workspace")
        return FileResponse(p, filename=p.name)

    return app
