"""`lapidar bench`: lapidar's default LoRA path against the plain transformers + peft recipe, same model shape,
same examples, same order, each stack in its own process.

The plain recipe is the one blog posts show: `transformers.Trainer` with `TrainingArguments(bf16=True)`, a peft
LoRA adapter on all linear layers, right-padded batches, the model's own loss over the full `[B, T, V]` logits.
lapidar's path is `lapidar.recipes.train` (`setup` -> `load_prepared_model` -> `fit`), untouched: padding-free
batches and the label-only fused loss. Both see the same random batches of lapidar's loader in the same order (the
Trainer with a sequential sampler over them; the plain recipe pads each batch to its longest example, as
`DataCollatorForSeq2Seq` does), so the trained tokens and the loss curves are comparable step by step.

Each stack runs as `python -m lapidar.recipes.bench STACK SPEC.json RESULT.json`; the parent samples the resident
memory of the whole process tree and also takes the child's own high-water mark (VmHWM). Steps are timed from the end of one
optimiser step to the end of the next, minus the validation passes in between; tokens/s counts non-padding tokens
of steps 3..N (the first two warm up allocators and kernels).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lapidar.data.formats import bundled_example
from lapidar.io import write_json, write_text
from lapidar.training.hardware import cpu_kind, matmul_gflops, native_bf16, peak_rss_mib

__all__ = [
    "BenchSpec",
    "compare",
    "long_conversations",
    "main",
    "matmul_peak",
    "measure_peak",
    "native_bf16",
    "synth_conversations",
]

STACKS = ("plain", "lapidar")
TIMED_FROM = 3  # first timed optimiser step (1-based)


@dataclass
class BenchSpec:
    """What both stacks train: the same model, data, order and hyperparameters."""

    model: str = "qwen2.5-0.5b"
    init: str = "random"
    steps: int = 14
    batch_size: int = 4
    max_length: int = 512
    lr: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 42
    eval_steps: int = 7
    plain_bf16: bool = True  # the recipe as blog posts write it; False: fp32, for hardware without native bf16
    train_file: str = ""
    val_file: str = ""
    out_dir: str = ""


# ---------------------------------------------------------------- data


def synth_conversations(
    rows: list[dict], n: int, seed: int, max_turns: int = 8, min_turns: int = 1, skew: float = 1.5
) -> list[dict]:
    """`n` multi-turn conversations, each min_turns..max_turns question/answer pairs drawn from `rows`
    (deterministic for `seed`).

    The bundled claims rows are short (≈ 90 tokens); chaining several gives the mixed lengths of real instruction
    data (≈ 90 to 600+ tokens, cut at max_length by the trainers). The number of turns k is drawn with weight
    k^-skew: with 1.5, about half the conversations are single-turn and the mean is 2.3 turns, close to the 2.0 turns
    per conversation of LMSYS-Chat-1M (Zheng et al. 2023, arXiv:2309.11998); skew 0 draws k uniformly.
    """
    rng = random.Random(seed)
    counts = list(range(min_turns, max_turns + 1))
    weights = [k**-skew for k in counts]
    out = []
    for _ in range(n):
        picks = [rng.choice(rows) for _ in range(rng.choices(counts, weights)[0])]
        system = [m for m in picks[0]["messages"] if m["role"] == "system"]
        turns = [m for row in picks for m in row["messages"] if m["role"] != "system"]
        out.append({"messages": system + turns})
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_bench_data(out: Path, n_train: int, n_val: int, seed: int) -> tuple[Path, Path]:
    """Write the synthesised train/validation conversations (from the bundled claims rows) as JSONL."""
    train_src, val_src = bundled_example("claims")
    train = synth_conversations(_read_jsonl(train_src), n_train, seed)
    val = synth_conversations(_read_jsonl(val_src), n_val, seed + 1)
    paths = out / "train.jsonl", out / "val.jsonl"
    for path, rows in zip(paths, (train, val), strict=True):
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return paths


def long_conversations(path: Path, n: int = 48, seed: int = 0) -> Path:
    """`n` conversations of 20-24 claims turns (≈ 1,500+ tokens): every row fills any max_length up to 1024, so
    every batch of a short run has the width the memory estimate assumes."""
    train_src, _ = bundled_example("claims")
    rows = synth_conversations(_read_jsonl(train_src), n, seed, max_turns=24, min_turns=20, skew=0.0)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- measured peaks


def measure_peak(cfg: Any, workdir: Path, timeout: float = 1800) -> dict:
    """Train `cfg` (a TrainConfig) for real in a fresh process; return its summary.json (`peak_memory_mib` is the
    process's peak RSS) plus `peak_rss_tree_mib`, the sampled peak of its process tree."""
    from lapidar.config import save_yaml

    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path, result = workdir / "config.yaml", workdir / "summary.json"
    save_yaml(cfg.model_dump(), cfg_path)
    result.unlink(missing_ok=True)
    log = workdir / "train.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lapidar.recipes.bench", "train", str(cfg_path), str(result)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        peak = _watch(proc, timeout)
    if proc.returncode != 0 or not result.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
        raise RuntimeError(f"measurement run failed (exit {proc.returncode}); {log}:\n{tail}")
    summary = json.loads(result.read_text(encoding="utf-8"))
    summary["peak_rss_tree_mib"] = peak
    return summary


def _train_worker(cfg_path: Path, result_path: Path) -> None:
    from lapidar.config import load_config
    from lapidar.recipes import train as recipe

    cfg = load_config(cfg_path, {})
    summary, _ = recipe.main(cfg, Console(file=open(os.devnull, "w")))  # noqa: SIM115
    write_json(result_path, summary)


# ---------------------------------------------------------------- machine ceiling


def matmul_peak(bf16: bool, n: int = 4096, seconds: float = 3.0) -> float:
    """GFLOP/s of an `n x n` matmul (bf16 or fp32) on the current GPU, else this machine's CPU."""
    import torch

    return matmul_gflops(bf16, n, seconds, device="cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- workers (run in their own process)


def _encoded_rows(spec: BenchSpec) -> list[Any]:
    """The tokenised training rows (for the length statistics of the report)."""
    from lapidar.models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(spec.model, spec.init))
    batches, _ = _encoded_order(spec, tokenizer, all_batches=True)
    return [e for b in batches for e in b]


def _encoded_order(spec: BenchSpec, tokenizer, all_batches: bool = False) -> tuple[list[list[Any]], list[Any]]:
    """The training batches of lapidar's loader for epoch 0 (first `steps`), and the validation rows."""
    from lapidar.data.batching import batches as _loop_batches
    from lapidar.data.formats import load_examples
    from lapidar.data.tokenize import encode_conversation

    def encode(path: str) -> list[Any]:
        examples, _ = load_examples(Path(path))
        encoded = [encode_conversation(tokenizer, e.messages, spec.max_length, e.source) for e in examples]
        return [e for e in encoded if e.n_answer_tokens]

    train, val = encode(spec.train_file), encode(spec.val_file)
    batches = _loop_batches(train, spec.batch_size, spec.seed, True, padding_free=True)
    return (batches if all_batches else batches[: spec.steps]), val


class _Clock:
    """Time stamps of the steps and validation passes of a run (a tracker for lapidar, a callback's store)."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.evals: list[dict] = []
        self._mark = time.perf_counter()

    def step_done(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        self.steps.append({"step": step, "seconds": now - self._mark, "train_loss": loss})
        self._mark = now

    def eval_done(self, step: int, val_loss: float, started: float) -> None:
        self.evals.append({"step": step, "val_loss": val_loss, "seconds": time.perf_counter() - started})
        self._mark = time.perf_counter()

    # lapidar's tracker protocol: start / log / finish
    def start(self, config: dict) -> None:
        self._mark = time.perf_counter()

    def log(self, record: dict, step: int) -> None:
        if "train_loss" in record:
            self.step_done(step, record["train_loss"])
            self._eval_start = time.perf_counter()
        elif "val_loss" in record:
            self.eval_done(step, record["val_loss"], getattr(self, "_eval_start", self._mark))

    def finish(self, ok: bool = True) -> None:
        pass


def _run_lapidar(spec: BenchSpec) -> dict:
    """lapidar's default path: `setup` -> `load_prepared_model` -> `fit`, with a clock as the tracker."""
    import torch

    from lapidar.config import TrainConfig
    from lapidar.data.batching import batches as loop_order
    from lapidar.recipes import train as recipe
    from lapidar.training.loop import fit

    fields: dict[str, Any] = {
        "model": spec.model,
        "init": spec.init,
        "method": "lora",
        "data": spec.train_file,
        "val_data": spec.val_file,
        "max_length": spec.max_length,
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "lora_r": spec.lora_r,
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": spec.lora_dropout,
        "max_steps": spec.steps,
        "eval_steps": spec.eval_steps,
        "save_steps": spec.steps,
        "scheduler": "linear",
        "warmup_ratio": 0.0,
        "patience": None,
        "log_steps": 1,
        "seed": spec.seed,
        "output": str(Path(spec.out_dir) / "lapidar-run"),
    }
    cfg = TrainConfig(**fields)
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    torch.manual_seed(cfg.seed)
    run = recipe.setup(cfg, console)
    started = time.perf_counter()
    model = recipe.load_prepared_model(run)
    load_s = time.perf_counter() - started
    batches, _ = _encoded_order(spec, run.tokenizer)
    # The bench's own order must be the loop's order, or the comparison is meaningless.
    assert [e.input_ids for b in batches for e in b] == [
        e.input_ids
        for b in loop_order(run.train, cfg.batch_size, cfg.seed, True, cfg.padding_free)[: spec.steps]
        for e in b
    ]
    clock = _Clock()
    run.trackers = clock
    summary = fit(run, model, [])
    return {
        "load_s": load_s,
        "steps": clock.steps,
        "evals": clock.evals,
        "precision": summary["precision"],
        "tokens": [sum(len(e.input_ids) for e in b) for b in batches],
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def _run_plain(spec: BenchSpec) -> dict:
    """The usual blog recipe: AutoModelForCausalLM + peft LoRA + transformers.Trainer(bf16=True)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from lapidar.config import TrainConfig
    from lapidar.data.batching import batches as _loop_batches
    from lapidar.data.tokenize import IGNORE
    from lapidar.models.loading import load_tokenizer, resolve_model
    from lapidar.training.hardware import use_bf16

    source = resolve_model(spec.model, spec.init)
    tokenizer = load_tokenizer(source)
    batches, val = _encoded_order(spec, tokenizer)
    torch.manual_seed(spec.seed)
    started = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(str(source.path))
    lora = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    load_s = time.perf_counter() - started
    pad = tokenizer.pad_token_id

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    rows = [{"input_ids": e.input_ids, "labels": e.labels} for b in batches for e in b]
    cuda = torch.cuda.is_available()
    bf16 = spec.plain_bf16
    # Validation runs in the precision lapidar's own evaluation picks here, so both curves are measured alike.
    eval_bf16 = use_bf16(TrainConfig.model_validate({}).precision, sum(p.numel() for p in model.parameters()))
    args = TrainingArguments(
        output_dir=str(Path(spec.out_dir) / "plain-run"),
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr,
        max_steps=spec.steps,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=bf16,
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=spec.seed,
    )
    clock = _Clock()
    device = torch.device("cuda" if cuda else "cpu")

    @torch.no_grad()
    def val_loss() -> float:
        # Sum over label tokens / label tokens, batched like lapidar's evaluate_loss.
        model.eval()
        total, count = 0.0, 0
        for b in _loop_batches(val, spec.batch_size, 0, shuffle=False):
            batch = {
                k: v.to(device) for k, v in collate([{"input_ids": e.input_ids, "labels": e.labels} for e in b]).items()
            }
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=eval_bf16):
                total += float(model(**batch).loss) * n
            count += n
        model.train()
        return total / max(count, 1)

    losses: dict[int, float] = {}

    class Timing(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            t = time.perf_counter()
            clock.eval_done(0, val_loss(), t)

        def on_step_end(self, args, state, control, **kw):
            clock.step_done(state.global_step, float("nan"))
            if state.global_step % spec.eval_steps == 0 or state.global_step == spec.steps:
                t = time.perf_counter()
                clock.eval_done(state.global_step, val_loss(), t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Timing()])
    trainer.train()
    # on_log runs after on_step_end; attach each step's logged loss afterwards.
    for s in clock.steps:
        s["train_loss"] = losses.get(s["step"], float("nan"))
    return {
        "load_s": load_s,
        "steps": clock.steps,
        "evals": clock.evals,
        "precision": "bf16" if bf16 else "fp32",
        "tokens": [sum(len(e.input_ids) for e in b) for b in batches],
        "positions": [len(b) * max(len(e.input_ids) for e in b) for b in batches],  # padding included
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def _worker(stack: str, spec_path: Path, result_path: Path) -> None:
    from lapidar.commands import quiet_libraries

    quiet_libraries()
    spec = BenchSpec(**json.loads(spec_path.read_text(encoding="utf-8")))
    result = _run_plain(spec) if stack == "plain" else _run_lapidar(spec)
    result["own_peak_mib"] = peak_rss_mib()  # this process's high-water mark (not the launcher's, see peak_rss_mib)
    write_json(result_path, result)


# ---------------------------------------------------------------- parent: run, measure, compare


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d.name))
            rss[int(d.name)] = int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
    page = os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0) * page
        todo += children.get(p, [])
    return total / 2**20


def _watch(proc: subprocess.Popen, timeout: float | None = None) -> float:
    """Wait for `proc`, sampling the resident memory of its process tree; return the peak in MiB."""
    peak = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mib(proc.pid))
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.1)
    return peak


def run_stack(stack: str, spec: BenchSpec, log: Path) -> dict:
    """Run one stack in a subprocess; return its result plus the peak RSS of its process tree."""
    spec_path = Path(spec.out_dir) / "spec.json"
    result_path = Path(spec.out_dir) / f"{stack}.json"
    write_json(spec_path, asdict(spec))
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "lapidar.recipes.bench", stack, str(spec_path), str(result_path)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        peak = _watch(proc)
    if proc.returncode != 0 or not result_path.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-30:])
        raise RuntimeError(f"bench stack {stack!r} failed (exit {proc.returncode}); log {log}:\n{tail}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["peak_rss_mib"] = max(peak, result["own_peak_mib"])
    result["peak_rss_sampled_mib"] = peak
    return result


def _time_to(result: dict, target: float) -> float | None:
    """Training seconds (steps only) until a validation pass first reached `target`."""
    for e in result["evals"]:
        if e["val_loss"] <= target + 1e-9:
            return sum(s["seconds"] for s in result["steps"] if s["step"] <= e["step"])
    return None


def compare(results: dict[str, dict], peaks: dict[str, float]) -> dict:
    """Throughput, memory, time to the same validation loss, MFU and the ratios lapidar / plain.

    `peaks` is the measured matmul GFLOP/s per precision ("bf16", "fp32"); each stack's MFU is taken against the
    peak of the precision it computes in.
    """
    out: dict[str, Any] = {"stacks": {}}
    for stack, r in results.items():
        timed = [s for s in r["steps"] if s["step"] >= TIMED_FROM]
        tokens = sum(r["tokens"][s["step"] - 1] for s in timed)
        seconds = sum(s["seconds"] for s in timed)
        tps = tokens / seconds if seconds else float("nan")
        flops_per_token = 4 * r["n_params"]  # LoRA: forward 2N + input gradients 2N; frozen weights get none
        out["stacks"][stack] = {
            "tokens_per_s": tps,
            "peak_rss_mib": r["peak_rss_mib"],
            "mfu": tps * flops_per_token / (peaks[r["precision"]] * 1e9),
            "precision": r["precision"],
            "load_s": r["load_s"],
            "train_loss": [s["train_loss"] for s in r["steps"]],
            "val_loss": {e["step"]: e["val_loss"] for e in r["evals"]},
        }
    target = max(min(e["val_loss"] for e in r["evals"]) for r in results.values())
    for stack, r in results.items():
        out["stacks"][stack]["time_to_target_s"] = _time_to(r, target)
    p, q = out["stacks"]["plain"], out["stacks"]["lapidar"]
    out["target_val_loss"] = target
    plain = results["plain"]
    if "positions" in plain:
        out["plain_padding_share"] = 1 - sum(plain["tokens"]) / max(sum(plain["positions"]), 1)
    out["ratios"] = {
        "tokens_per_s": q["tokens_per_s"] / p["tokens_per_s"],
        "peak_rss": q["peak_rss_mib"] / p["peak_rss_mib"],
        "time_to_target": (q["time_to_target_s"] / p["time_to_target_s"])
        if q["time_to_target_s"] and p["time_to_target_s"]
        else None,
    }
    diffs = [abs(a - b) for a, b in zip(p["train_loss"], q["train_loss"], strict=False)]
    out["max_train_loss_diff"] = max(diffs) if diffs else None
    out["max_val_loss_diff"] = max(
        abs(p["val_loss"][k] - q["val_loss"][k]) for k in p["val_loss"] if k in q["val_loss"]
    )
    return out


def print_report(console: Console, report: dict) -> None:
    """The comparison table."""
    table = Table(
        title=f"lapidar bench: {report['spec']['model']} ({report['spec']['init']}), LoRA r{report['spec']['lora_r']}"
    )
    for col in ("stack", "trained tok/s", "peak RSS", "time to val loss", "MFU", "precision"):
        table.add_column(col, justify="right")
    for stack, s in report["stacks"].items():
        t = s["time_to_target_s"]
        table.add_row(
            stack,
            f"{s['tokens_per_s']:.1f}",
            f"{s['peak_rss_mib'] / 1024:.2f} GiB",
            f"{t:.0f} s" if t is not None else "-",
            f"{100 * s['mfu']:.1f}%",
            s["precision"],
        )
    r = report["ratios"]
    if "lengths" in report:
        n = report["lengths"]
        console.print(
            f"training rows: {n['rows']}, tokens per row mean {n['mean']:.0f}, median {n['median']}, p90 {n['p90']}, "
            f"max {n['max']} (cut at {report['spec']['max_length']}); padding in the plain recipe's timed batches: "
            f"{100 * report.get('plain_padding_share', 0):.0f}% of positions"
        )
    table.add_row(
        "lapidar / plain",
        f"{r['tokens_per_s']:.2f}x",
        f"{r['peak_rss']:.2f}x",
        f"{r['time_to_target']:.2f}x" if r["time_to_target"] else "-",
        "",
        "",
    )
    console.print(table)
    console.print(
        f"CPU kind: {report.get('cpu_kind', 'not recorded')}; "
        f"matmul peak (4096x4096): {report['matmul_peak_gflops']:.0f} GFLOP/s bf16, "
        f"{report['matmul_peak_fp32_gflops']:.0f} GFLOP/s fp32 (MFU against the stack's precision); target validation loss "
        f"{report['target_val_loss']:.4f}; largest train-loss difference per step {report['max_train_loss_diff']:.4f}, "
        f"validation {report['max_val_loss_diff']:.4f}"
    )


def main(spec: BenchSpec, output: Path, console: Console, n_train: int = 256, n_val: int = 12) -> dict:
    """Synthesise the data, materialise the model, measure the matmul peak, run both stacks, write bench.json."""
    from lapidar.models.loading import resolve_model

    output.mkdir(parents=True, exist_ok=True)
    spec.out_dir = str(output.resolve())
    train_file, val_file = write_bench_data(output / "data", n_train, n_val, spec.seed)
    spec.train_file, spec.val_file = str(train_file.resolve()), str(val_file.resolve())
    resolve_model(spec.model, spec.init)  # build once here, not inside a timed worker
    peak = matmul_peak(bf16=True)
    peak_fp32 = matmul_peak(bf16=False)
    native = native_bf16()
    kind = cpu_kind()
    console.print(
        f"CPU kind: {kind}; matmul peak: {peak:.0f} GFLOP/s bf16, {peak_fp32:.0f} GFLOP/s fp32; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = {}
    lengths = sorted(len(e.input_ids) for e in _encoded_rows(spec))
    for stack in STACKS:
        console.print(f"running {stack} ...")
        results[stack] = run_stack(stack, spec, output / f"{stack}.log")
    report = {
        "spec": asdict(spec),
        "matmul_peak_gflops": peak,
        "matmul_peak_fp32_gflops": peak_fp32,
        "native_bf16": native,
        "cpu_kind": kind,
        "load_average": os.getloadavg(),
        "lengths": {
            "rows": len(lengths),
            "mean": sum(lengths) / len(lengths),
            "median": lengths[len(lengths) // 2],
            "p90": lengths[int(0.9 * (len(lengths) - 1))],
            "max": lengths[-1],
        },
        **compare(results, {"bf16": peak, "fp32": peak_fp32}),
        "raw": results,
    }
    write_json(output / "bench.json", report)
    print_report(console, report)
    return report


if __name__ == "__main__":
    if sys.argv[1] == "train":
        _train_worker(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        _worker(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
