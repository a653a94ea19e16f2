"""`lapidar serve` as a real process on a loopback port, used through the official `openai` client."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.recipes.test_export_recipe import PAIRS, lapidar, trained_run

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'lapidar[serve]')")
openai = pytest.importorskip("openai", reason="the test extra is not installed (pip install 'lapidar[test]')")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.recipe
KEY = "sk-lapidar-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@contextlib.contextmanager
def serving(run: Path, log_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`lapidar serve RUN --api-key KEY` on a free loopback port, as a user starts it; yields (base URL, process)."""
    port = _free_port()
    log = (log_dir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lapidar", "serve", str(run), "--port", str(port), "--api-key", KEY, *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LAPIDAR_API_KEY": ""},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lapidar serve exited with {proc.returncode}: {Path(log.name).read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("lapidar serve did not start within 120 s")
    try:
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    with serving(run, tmp_path_factory.mktemp("serve"), "--max-body", "100000") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def run_answer(run) -> str:
    from lapidar.inference.generate import SamplingOptions, generate, load_for_inference

    loaded = load_for_inference(str(run))
    return generate(loaded, [{"role": "user", "content": PAIRS[0][0]}], SamplingOptions(32))[0]


def test_models_and_chat_match_the_run(client, run_answer):
    (model,) = client.models.list().data
    assert model.id == "run"
    reply = client.chat.completions.create(
        model="run", messages=[{"role": "user", "content": PAIRS[0][0]}], temperature=0, max_tokens=32
    )
    assert reply.choices[0].message.content == run_answer
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 10
    assert "RANDOMLY INITIALISED" in reply.model_extra["lapidar_warning"]


def test_streaming_chat_gives_the_same_text(client, run_answer):
    stream = client.chat.completions.create(
        model="run",
        messages=[{"role": "user", "content": PAIRS[0][0]}],
        temperature=0,
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == run_answer
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions_plain_and_streamed(client):
    done = client.completions.create(model="run", prompt="The sky is", temperature=0, max_tokens=8)
    assert done.choices[0].finish_reason in {"stop", "length"} and done.usage.completion_tokens <= 8
    streamed = client.completions.create(model="run", prompt="The sky is", temperature=0, max_tokens=8, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text


def test_fifty_concurrent_requests(client, run_answer):
    def ask(i: int) -> str:
        reply = client.chat.completions.create(
            model="run", messages=[{"role": "user", "content": PAIRS[0][0]}], temperature=0, max_tokens=32
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert answers == [run_answer] * 50  # queued one at a time: no request disturbed another


def test_bad_requests_get_4xx_and_server_keeps_serving(server, client):
    base, proc = server
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{base}/v1/chat/completions"
    r = httpx.post(url, content=b'{"messages": [', headers=auth)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(url, json={"messages": [{"role": "user", "content": 5}]}, headers=auth)
    assert r.status_code == 400 and "messages.0.content" in r.json()["error"]["message"]
    r = httpx.post(url, json={"messages": [{"role": "user", "content": "x" * 200_000}]}, headers=auth)
    assert r.status_code == 413
    assert httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
    assert proc.poll() is None
    assert client.chat.completions.create(model="run", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_public_bind_without_key_is_refused(run):
    env = {**os.environ, "LAPIDAR_API_KEY": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "serve", str(run), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --host 0.0.0.0 makes the server reachable") and "--api-key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert lapidar("serve", "--help").returncode == 0
