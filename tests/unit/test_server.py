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
