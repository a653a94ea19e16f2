"""The one loop as a library: driven from another thread, stopped by a request, observed through event sinks."""

from __future__ import annotations

import io
import json
import threading

import pytest
import torch
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.recipes.train import load_prepared_model, setup
from lapidar.training.events import Event, PlainSink
from lapidar.training.loop import StopRequest, fit
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe


class Recorder:
    """A sink that keeps every event and asks the run to stop after `stop_after` logged steps."""

    def __init__(self, stop: StopRequest, stop_after: int):
        self.events: list[Event] = []
        self.stop, self.stop_after = stop, stop_after
        self.closed: bool | None = None
        self.thread: str | None = None

    def handle(self, event: Event) -> None:
        self.events.append(event)
        self.thread = threading.current_thread().name
        if event.kind == "step" and event.step >= self.stop_after:
            self.stop.set("the test asked")

    def close(self, ok: bool) -> None:
        self.closed = ok


def test_a_stop_request_from_another_thread_checkpoints_and_ends_the_run(tmp_path):
    torch.set_num_threads(1)
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    cfg = TrainConfig(
        data=str(data), val_data=str(data), output=str(tmp_path / "run"), max_steps=40, eval_steps=10, log_steps=2,
        batch_size=2, lr=2e-3,
    )  # fmt: skip
    run = setup(cfg, Console(file=io.StringIO()))
    model = load_prepared_model(run)
    stop = StopRequest()
    recorder = Recorder(stop, stop_after=4)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(fit(run, model, [recorder], stop)), name="web-worker")
    worker.start()
    worker.join(timeout=600)
    assert result["interrupted"] and result["steps"] == 4 and result["stop_reason"] == "interrupted at step 4"
    kinds = [e.kind for e in recorder.events]
    assert kinds[0] == "start" and kinds[-1] == "finished" and "eval" in kinds and "note" in kinds
    assert [e.step for e in recorder.events if e.kind == "step"] == [2, 4]
    saved = [e for e in recorder.events if e.kind == "checkpoint" and e.message]
    assert saved and "--resume" in saved[0].message and (tmp_path / "run" / "checkpoints" / "step-000004").is_dir()
    assert recorder.closed is True and recorder.thread == "web-worker"
    # metrics.jsonl is a sink too: the same step records, without the sinks' private keys
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [2, 4]
    assert not any(k.startswith("_") for r in records for k in r)


def test_the_loss_goes_through_the_models_own_forward(tmp_path):
    # DDP's gradient sync and FSDP's gathering of sharded weights hook the wrapped model's forward: the loss must run
    # inside it, not on its submodules.
    from lapidar.data.tokenize import collate
    from lapidar.training.loss import causal_lm_loss
    from lapidar.training.objectives import sequence_logps

    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    run = setup(TrainConfig(data=str(data), output=str(tmp_path / "run")), Console(file=io.StringIO()))
    model = load_prepared_model(run)
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    batch = collate(run.train[:3], run.tokenizer.pad_token_id)
    loss, n = causal_lm_loss(model, batch)
    logps = sequence_logps(model, batch)
    assert len(calls) == 2
    # the summed token loss is minus the summed log-probabilities of the same labels
    assert loss.item() == pytest.approx(-logps.sum().item(), rel=1e-4) and n == sum(
        e.n_answer_tokens for e in run.train[:3]
    )


def test_plain_sink_line_has_step_loss_lr_speed_elapsed_and_eta():
    out = io.StringIO()
    sink = PlainSink(Console(file=out, width=40))
    record = {"train_loss": 1.23456, "lr": 2e-4, "tokens_per_s": 1812.4, "_first_step": 0}
    sink.handle(Event("step", step=20, total=100, elapsed=12.0, record=record))
    sink.handle(Event("eval", step=20, total=100, record={"val_loss": 1.5}, best=True))
    lines = out.getvalue().splitlines()
    assert lines[0] == "step 20/100  loss 1.2346  lr 2.00e-04  1,812 tok/s  elapsed 0:12  eta 0:48"
    assert lines[1] == "step    20  validation loss 1.5000  best so far, saved"
