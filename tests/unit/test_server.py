"""The OpenAI-compatible app in-process (FastAPI TestClient) on the random tiny model: protocol, limits, errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'lapidar[serve]')")

import torch
from fastapi.testclient import TestClient

from lapidar.errors import UserError
from lapidar.models.loading import RANDOM_LABEL
from lapidar.server import check_bind, is_loopback
from lapidar.server.app import create_app
from lapidar.server.engine import Engine, Job
from tests.conftest import CLAIM_TOOLS

KEY = "sk-test-123"
HI = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def loaded(tiny_source):
    from lapidar.inference.generate import load_for_inference

    return load_for_inference("tiny-qwen2.5")


@pytest.fixture(scope="module")
def client(loaded):
    with TestClient(create_app(loaded, "tiny", max_body=20_000)) as c:
        yield c


@pytest.fixture(scope="module")
def keyed(loaded):
    with TestClient(create_app(loaded, "tiny", api_key=KEY)) as c:
        yield c


def _greedy_hf(loaded, prompt_ids, n):
    out = loaded.model.generate(
        input_ids=torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=n,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        eos_token_id=loaded.tokenizer.eos_token_id,
        pad_token_id=loaded.tokenizer.pad_token_id,
    )
    return out[0, len(prompt_ids) :].tolist()


def test_engine_greedy_matches_transformers_generate(loaded):
    tok = loaded.tokenizer
    ids = tok(tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True))[
        "input_ids"
    ]
    engine = Engine(loaded, context_length=32768)
    pieces = list(engine.decode(Job(ids, max_tokens=16, temperature=0)))
    text = "".join(p.text for p in pieces)
    expected = _greedy_hf(loaded, ids, 16)
    assert text == tok.decode([t for t in expected if t != tok.eos_token_id], skip_special_tokens=True)
    assert pieces[-1].completion_tokens == len(expected)
    assert pieces[-1].prompt_tokens == len(ids)


def test_models_lists_the_model_with_random_warning(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    (entry,) = r.json()["data"]
    assert entry["id"] == "tiny" and entry["lapidar_warning"] == RANDOM_LABEL
    assert r.headers["x-lapidar-warning"] == RANDOM_LABEL


def test_chat_completion_and_stream_agree(client):
    r = client.post("/v1/chat/completions", json=HI)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["lapidar_warning"] == RANDOM_LABEL
    text = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 12

    with client.stream("POST", "/v1/chat/completions", json={**HI, "stream": True}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == text
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_client_leaving_mid_stream_frees_the_model(client):
    with client.stream("POST", "/v1/completions", json={"prompt": "The", "max_tokens": 200, "stream": True}) as s:
        first = next(line for line in s.iter_lines() if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["choices"]
    assert client.post("/v1/chat/completions", json=HI).status_code == 200


def test_stop_string_ends_answer_without_it(client):
    full = client.post("/v1/completions", json={"prompt": "The", "temperature": 0, "max_tokens": 20}).json()
    text = full["choices"][0]["text"]
    assert len(text) > 6
    stop = text[3:6]
    cut = client.post("/v1/completions", json={"prompt": "The", "temperature": 0, "max_tokens": 20, "stop": stop})
    choice = cut.json()["choices"][0]
    assert choice["text"] == text[: text.find(stop)]
    assert choice["finish_reason"] == "stop"
    with client.stream(
        "POST",
        "/v1/completions",
        json={"prompt": "The", "temperature": 0, "max_tokens": 20, "stop": [stop], "stream": True},
    ) as s:
        events = [line.removeprefix("data: ") for line in s.iter_lines() if line.startswith("data: ")]
    streamed = "".join(c["choices"][0]["text"] for c in map(json.loads, events[:-1]) if c["choices"])
    assert streamed == choice["text"]


def test_sampling_is_seeded(client):
    req = {**HI, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    a = client.post("/v1/chat/completions", json=req).json()["choices"][0]["message"]["content"]
    b = client.post("/v1/chat/completions", json=req).json()["choices"][0]["message"]["content"]
    assert a == b


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"messages": [', "not valid JSON"),
        (b'{"messages": "hi"}', "messages"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}', "stop"),
        (b"[1, 2]", "body"),
    ],
)
def test_bad_bodies_get_400_with_openai_error(client, body, fragment):
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] == "invalid_request_error"


def test_completion_needs_one_prompt(client):
    assert client.post("/v1/completions", json={"prompt": ["a", "b"]}).status_code == 400
    assert client.post("/v1/completions", json={"prompt": ""}).status_code == 400


def test_oversized_body_gets_413_and_server_keeps_serving(client):
    big = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"x" * 1000

    r = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/chat/completions", json=HI).status_code == 200


def test_unknown_path_is_json_404(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_api_key_required_when_set(keyed):
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = keyed.post("/v1/chat/completions", json=HI, headers={"Authorization": "Basic " + KEY})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert keyed.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert keyed.get("/health").status_code == 200


def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    check_bind("127.0.0.1", 8000, None)
    check_bind("0.0.0.0", 8000, "key")
    with pytest.raises(UserError, match="--api-key"):
        check_bind("0.0.0.0", 8000, None)
    with pytest.raises(UserError, match="--port"):
        check_bind("127.0.0.1", 70000, None)


# ---------------------------------------------------------------- tool calling

TOOLS = CLAIM_TOOLS
CALL = '<tool_call>\n{"name": "get_claim_status", "arguments": {"claim_id": "HM-1042"}}\n</tool_call>'
ASK = [{"role": "user", "content": "Where is claim HM-1042?"}]


class Scripted:
    """Makes the real tiny model answer `text` greedily: a forward hook on lm_head leaves only the next scripted
    token possible. The server's own decoding loop, template and parsing all run unchanged."""

    def __init__(self, loaded, text: str):
        tok = loaded.tokenizer
        self.ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
        self.step = 0
        model = loaded.model
        self.handles = [
            model.get_input_embeddings().register_forward_hook(self.on_input),
            model.get_output_embeddings().register_forward_hook(self.on_logits),
        ]

    def on_input(self, module, args, output):
        if args[0].shape[1] > 1:  # the input is a whole prompt: a new answer starts
            self.step = 0

    def on_logits(self, module, args, logits):
        forced = torch.full_like(logits, -1e9)
        forced[..., self.ids[min(self.step, len(self.ids) - 1)]] = 0.0
        self.step += 1
        return forced


@pytest.fixture
def scripted(loaded):
    hooks = []

    def make(text: str) -> Scripted:
        s = Scripted(loaded, text)
        hooks.extend(s.handles)
        return s

    yield make
    for h in hooks:
        h.remove()


@pytest.fixture(scope="module")
def oai(loaded):
    """The official openai client talking to the app in-process (TestClient is an httpx.Client)."""
    openai = pytest.importorskip("openai")
    with TestClient(create_app(loaded, "tiny")) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)


def _prompt_tokens(loaded, messages, tools=None) -> int:
    from lapidar.data.tokenize import render_prompt

    return len(
        loaded.tokenizer(render_prompt(loaded.tokenizer, messages, tools), add_special_tokens=False)["input_ids"]
    )


def test_tools_request_returns_openai_tool_calls(oai, loaded, scripted):
    scripted(CALL)
    reply = oai.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_claim_status"
    assert json.loads(call.function.arguments) == {"claim_id": "HM-1042"}
    # The tool specs were in the prompt, rendered by the official template.
    assert reply.usage.prompt_tokens == _prompt_tokens(loaded, ASK, TOOLS) > _prompt_tokens(loaded, ASK) + 50


def test_streamed_tool_calls_arrive_as_openai_deltas(oai, scripted):
    scripted("Checking.\n" + CALL + "\n" + CALL.replace("HM-1042", "HM-7"))
    stream = oai.chat.completions.create(
        model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=96, stream=True
    )
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    calls: dict[int, dict] = {}
    for c in chunks:
        for d in c.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = d.id or entry["id"]
            if d.function and d.function.name:
                entry["name"] += d.function.name
            if d.function and d.function.arguments:
                entry["arguments"] += d.function.arguments
    assert text == "Checking."
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_claim_status", "get_claim_status"]
    assert [json.loads(calls[i]["arguments"]) for i in sorted(calls)] == [{"claim_id": "HM-1042"}, {"claim_id": "HM-7"}]
    assert all(e["id"].startswith("call_") for e in calls.values()) and calls[0]["id"] != calls[1]["id"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The non-streamed answer is the same.
    reply = oai.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=96)
    assert reply.choices[0].message.content == "Checking."
    assert [json.loads(c.function.arguments) for c in reply.choices[0].message.tool_calls] == [
        {"claim_id": "HM-1042"},
        {"claim_id": "HM-7"},
    ]


def test_parallel_tool_calls_false_keeps_the_first(oai, scripted):
    scripted(CALL + "\n" + CALL.replace("HM-1042", "HM-7"))
    reply = oai.chat.completions.create(
        model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=96, parallel_tool_calls=False
    )
    (call,) = reply.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"claim_id": "HM-1042"}


def test_malformed_call_is_returned_as_text(oai, scripted):
    broken = '<tool_call>\n{"name": "get_claim_status", "arguments": {"claim_id": }\n</tool_call>'
    scripted(broken)
    reply = oai.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=64)
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == broken
    assert reply.choices[0].finish_reason == "stop"


def test_tool_results_in_the_conversation_are_rendered(oai, loaded, scripted):
    scripted("Claim HM-1042 is approved.")
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_claim_status", "arguments": '{"claim_id": "HM-1042"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "approved"}'},
    ]
    reply = oai.chat.completions.create(model="tiny", messages=history, tools=TOOLS, temperature=0, max_tokens=32)
    assert reply.choices[0].message.content == "Claim HM-1042 is approved."
    assert reply.choices[0].finish_reason == "stop"
    # The official template's rendering: the earlier call as the model writes one, the result as <tool_response>.
    official = loaded.tokenizer.apply_chat_template(
        [
            *ASK,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_claim_status", "arguments": {"claim_id": "HM-1042"}}}
                ],
            },
            {"role": "tool", "content": '{"status": "approved"}'},
        ],
        tools=TOOLS,
        add_generation_prompt=True,
        tokenize=False,
    )
    assert CALL in official and '<tool_response>\n{"status": "approved"}\n</tool_response>' in official
    assert reply.usage.prompt_tokens == len(loaded.tokenizer(official, add_special_tokens=False)["input_ids"])


def test_tool_choice_none_answers_in_text(client, loaded, scripted):
    scripted(CALL)
    body = {"messages": ASK, "tools": TOOLS, "tool_choice": "none", "temperature": 0, "max_tokens": 64}
    r = client.post("/v1/chat/completions", json=body).json()
    assert "tool_calls" not in r["choices"][0]["message"]
    assert r["choices"][0]["message"]["content"] == CALL  # returned as written, not parsed
    assert r["usage"]["prompt_tokens"] == _prompt_tokens(loaded, ASK)  # the tools were left out of the prompt


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice: Value error, 'required' is not supported"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_claim_status"}}},
            "cannot force the model to call a tool",
        ),
        ({"tools": [{"name": "get_claim_status"}]}, 'tools: Value error, tools[0]: expected {"type": "function"'),
        ({"functions": [{"name": "f"}]}, "functions: Value error, the deprecated form is not supported"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]},
            "messages.0.tool_calls.0.function.arguments: Value error, not valid JSON",
        ),
        (
            {"messages": [{"role": "user", "tool_calls": [{"function": {"name": "f"}}]}]},
            "only assistant messages carry tool_calls",
        ),
    ],
)
def test_unsupported_tool_requests_get_400(client, extra, fragment):
    r = client.post("/v1/chat/completions", json={**HI, **extra})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


def test_tools_with_a_template_that_cannot_show_them_get_400(loaded):
    from lapidar.inference.generate import Loaded
    from lapidar.models.qwen import chat_template

    tok = loaded.tokenizer
    saved = tok.chat_template
    tok.chat_template = chat_template("base")  # the plain template of base models
    try:
        with TestClient(create_app(Loaded(loaded.model, tok, "base", True), "base")) as c:
            r = c.post("/v1/chat/completions", json={**HI, "tools": TOOLS})
    finally:
        tok.chat_template = saved
    assert r.status_code == 400 and "has no place for them" in r.json()["error"]["message"]
