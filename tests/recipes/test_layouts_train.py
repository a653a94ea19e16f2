"""Other tools' layouts train end to end on tiny-qwen2.5: one file mixing them (sft) and whole-conversation pairs (dpo).

In process (the `main` the CLI calls), to spare interpreter start-ups; one thread, as the other recipe tests.
"""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.recipes.train import main
from tests.conftest import FIXTURES, write_jsonl

pytestmark = pytest.mark.recipe

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITIES = ["Oslo", "Porto", "Rome", "Lima", "Kyiv", "Pune", "Baku", "Cork"]


def _rows(city: str) -> list[dict]:
    """One row per layout, all in the `messages` format, about one city."""
    return [
        {  # OpenAI function calling: tools, tool_calls with JSON-string arguments, a tool result
            "messages": [
                {"role": "user", "content": f"Weather in {city}?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}],
                },
                {"role": "tool", "content": '{"temp_c": 12}'},
                {"role": "assistant", "content": f"It is 12 °C in {city}."},
            ],
            "tools": [{"type": "function", "function": WEATHER}],
        },
        {  # content parts with the text under `value`, and an OpenAI weight-0 answer
            "messages": [
                {"role": "user", "content": [{"type": "text", "value": f"Spell {city}."}]},
                {"role": "assistant", "content": "No.", "weight": 0},
                {"role": "user", "content": [{"type": "text", "content": "Please."}]},
                {"role": "assistant", "content": [{"type": "text", "value": " ".join(city.upper())}]},
            ]
        },
        {  # an answer with its reasoning (kept as a <think> prefix)
            "messages": [
                {"role": "user", "content": f"Is {city} a city?"},
                {"role": "assistant", "content": "Yes.", "reasoning_content": f"{city} is a city."},
            ]
        },
    ]  # fmt: skip


def _sharegpt_rows(city: str) -> list[dict]:
    """The same tasks in LLaMA-Factory's sharegpt (tools as JSON text, function_call/observation turns) with
    Axolotl's per-turn `train` flags and role/value turns."""
    return [
        {
            "conversations": [
                {"from": "human", "value": f"Weather in {city}?"},
                {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city}})},
                {"from": "observation", "value": '{"temp_c": 12}'},
                {"from": "gpt", "value": f"It is 12 °C in {city}."},
            ],
            "tools": json.dumps([WEATHER]),
        },
        {
            "conversations": [
                {"from": "human", "value": f"Spell {city}."},
                {"from": "gpt", "value": "No.", "train": False},
                {"from": "human", "value": "Please."},
                {"from": "gpt", "value": " ".join(city.upper()), "train": True},
            ]
        },
        {"conversations": [{"role": "user", "value": f"Is {city} a city?"}, {"role": "assistant", "value": "Yes."}]},
    ]


def _config(tmp_path, train, val, **extra) -> TrainConfig:
    return TrainConfig(
        data=str(train), val_data=str(val), output=str(tmp_path / "run"), lr=2e-3, batch_size=4, seed=7, **extra
    )


def _metrics(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("rows", [_rows, _sharegpt_rows], ids=["messages", "sharegpt"])
def test_sft_on_a_file_mixing_the_layouts(tmp_path, rows):
    torch.set_num_threads(1)
    train = write_jsonl(tmp_path / "train.jsonl", [r for c in CITIES[:6] for r in rows(c)])
    val = write_jsonl(tmp_path / "val.jsonl", [r for c in CITIES[6:] for r in rows(c)])
    console = Console(file=io.StringIO(), width=200)
    summary, _ = main(_config(tmp_path, train, val, max_steps=5, eval_steps=5), console)
    shown = console.file.getvalue()
    # The first example is shown as the model sees it: the tool spec in the system turn, the call trained.
    assert "# Tools" in shown and '"name": "get_weather"' in shown and "<tool_response>" in shown
    metrics = _metrics(tmp_path)
    losses = [r["train_loss"] for r in metrics if "train_loss" in r]
    val_losses = [r["val_loss"] for r in metrics if "val_loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    assert val_losses[-1] < val_losses[0] - 1.0, val_losses
    assert summary["train_rows"] == 18 and summary["steps"] == 5


def _chosen_messages(r: dict) -> dict:
    prompt = [{"role": "user", "content": r["prompt"]}]
    return {
        "chosen_messages": [*prompt, {"role": "assistant", "content": r["chosen"]}],
        "rejected_messages": [*prompt, {"role": "assistant", "content": r["rejected"]}],
    }


def _trl_implicit(r: dict) -> dict:
    prompt = [{"role": "user", "content": r["prompt"]}]
    return {
        "chosen": [*prompt, {"role": "assistant", "content": r["chosen"]}],
        "rejected": [*prompt, {"role": "assistant", "content": r["rejected"]}],
    }


def _openai_dpo(r: dict) -> dict:
    return {
        "input": {"messages": [{"role": "user", "content": r["prompt"]}], "tools": [], "parallel_tool_calls": True},
        "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
        "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}],
    }


@pytest.mark.parametrize(
    "layout", [_chosen_messages, _trl_implicit, _openai_dpo], ids=["chosen_messages", "trl", "openai"]
)
def test_dpo_on_whole_conversation_pairs(tmp_path, layout):
    torch.set_num_threads(1)

    def pairs(name: str) -> list[dict]:
        return [layout(json.loads(line)) for line in (FIXTURES / "preference" / name).read_text().splitlines()]

    train = write_jsonl(tmp_path / "train.jsonl", pairs("pairs_train.jsonl"))
    val = write_jsonl(tmp_path / "val.jsonl", pairs("pairs_val.jsonl"))
    console = Console(file=io.StringIO(), width=200)
    summary, _ = main(_config(tmp_path, train, val, max_steps=4, eval_steps=4), console)
    assert summary["objective"] == "dpo" and summary["train_rows"] == 12
    val_rows = [r for r in _metrics(tmp_path) if "val_loss" in r]
    assert val_rows[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert val_rows[-1]["val_loss"] < math.log(2) and val_rows[-1]["val_reward_margin"] > 0
