"""Tool calling end to end: train tiny-qwen2.5 on function-calling rows (OpenAI's fine-tuning layout), then use the
run as a user would — `lapidar serve` answering the official `openai` client's `tools=[...]` request with
`tool_calls`, eval scoring the calls, predict, and `lapidar generate --tools`.

The model has random weights, so it can only learn these three rows by heart (30 LoRA steps at a high learning
rate are enough for greedy decoding to write each call exactly); the questions asked are the trained ones. What
this pins is the pipeline: the tool specs reach the prompt as in training, and the calls come back parsed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tests.recipes.test_export_recipe import lapidar

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'lapidar[serve]')")
openai = pytest.importorskip("openai", reason="the test extra is not installed (pip install 'lapidar[test]')")

from tests.recipes.test_serve import KEY, serving  # noqa: E402  (after the skips: it needs httpx and openai)

pytestmark = pytest.mark.recipe

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_claim_status",
            "description": "Status of a claim.",
            "parameters": {"type": "object", "properties": {"claim_id": {"type": "string"}}, "required": ["claim_id"]},
        },
    }
]
CLAIMS = ["HM-1042", "HM-2177", "HM-3310"]


def question(claim: str) -> str:
    return f"What is the status of claim {claim}?"


def tool_rows() -> list[dict]:
    """OpenAI's fine-tuning layout: tools beside messages, the call under tool_calls with JSON-string arguments."""
    return [
        {
            "messages": [
                {"role": "user", "content": question(c)},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_claim_status", "arguments": json.dumps({"claim_id": c})},
                        }
                    ],
                },
            ],
            "tools": TOOLS,
        }
        for c in CLAIMS
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("tools-data") / "tools.jsonl", tool_rows())


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tools-run") / "run"
    out = lapidar(
        "train", "--model", "tiny-qwen2.5", "--data", str(data), "--val-data", str(data), "--max-steps", "30",
        "--lr", "8e-3", "--batch-size", "3", "--eval-steps", "30", "--seed", "3", "--output", str(run),
    ).stdout  # fmt: skip
    assert '"name": "get_claim_status"' in out and "# Tools" in out  # the first example shown with its tool specs
    return run


@pytest.fixture(scope="module")
def client(run, tmp_path_factory):
    with serving(run, tmp_path_factory.mktemp("tools-serve")) as (base, _):
        yield openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=120)


def test_served_run_answers_tools_request_with_tool_calls(client):
    reply = client.chat.completions.create(
        model="run",
        messages=[{"role": "user", "content": question("HM-2177")}],
        tools=TOOLS,
        temperature=0,
        max_tokens=48,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_claim_status"
    assert json.loads(call.function.arguments) == {"claim_id": "HM-2177"}


def test_streamed_request_gives_the_same_call(client):
    stream = client.chat.completions.create(
        model="run",
        messages=[{"role": "user", "content": question("HM-3310")}],
        tools=TOOLS,
        temperature=0,
        max_tokens=48,
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert delta.index == 0
            name += (delta.function.name or "") if delta.function else ""
            arguments += (delta.function.arguments or "") if delta.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert name == "get_claim_status" and json.loads(arguments) == {"claim_id": "HM-3310"}
    assert finish == "tool_calls"


def test_eval_scores_tool_calls_as_exact_match(run, data, tmp_path):
    # In-process (the eval CLI itself is tested in test_eval_recipe.py): one torch import less on 2 cores.
    from lapidar.evaluation.evaluate import EvalSettings, main

    out = tmp_path / "eval"
    result = main(EvalSettings(str(run), data, out, compare_base=True, probe="none"), Console(file=io.StringIO()))
    assert result["task_shape"] == "tool_call" and result["primary_metric"] == "tool_call_match"
    assert result["model"]["scores"]["tool_call_match"] == 1.0
    assert result["base"]["scores"]["tool_call_match"] == 0.0  # the random base never writes a call
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows[0]["tools"] == TOOLS
    assert rows[0]["tool_calls"]["prediction"] == [{"name": "get_claim_status", "arguments": {"claim_id": CLAIMS[0]}}]


def test_predict_and_generate_render_the_tools(run, data, tmp_path):
    from lapidar.inference import predict
    from lapidar.inference.generate import SamplingOptions, load_for_inference
    from lapidar.inference.tools import parse_tool_calls

    out = tmp_path / "predictions.jsonl"
    options = predict.PredictOptions(sampling=SamplingOptions(48))
    predict.main(load_for_inference(str(run)), data, out, options, Console(file=io.StringIO()))
    predictions = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
    assert [parse_tool_calls(p).calls[0].arguments for p in predictions] == [{"claim_id": c} for c in CLAIMS]

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS), encoding="utf-8")
    text = lapidar("generate", str(run), "--prompt", question("HM-1042"), "--tools", str(tools)).stdout
    (call,) = parse_tool_calls(text).calls
    assert call.name == "get_claim_status" and call.arguments == {"claim_id": "HM-1042"}
