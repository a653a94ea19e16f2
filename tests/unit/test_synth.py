"""`lapidar data synth` against a real HTTP server on 127.0.0.1 that answers like an OpenAI chat endpoint (a
stand-in for the stronger model: deterministic replies, and on request 401s, HTML, 500s or refusals)."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lapidar import cli
from lapidar.data.formats import load_dataset
from lapidar.data.synth import drop_reason, parse_json_reply, sidecar_path

ROWS = [
    {"question": "What documents do I need to file a car claim?", "answer": "The police report and photos."},
    {"question": "How long does a water damage claim take?", "answer": "About two weeks after the visit."},
    {"question": "Can I choose my own repair shop?", "answer": "Yes, any licensed shop."},
    {"question": "Is hail damage covered by basic policies?", "answer": "Only with the weather add-on."},
]


class Endpoint(ThreadingHTTPServer):
    behaviour = "ok"
    requests = 0
    fail_first = 0
    seed_counter = 0


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: str, kind: str = "application/json") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        srv = self.server
        srv.requests += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if srv.behaviour == "401":
            return self._send(401, '{"error": {"message": "bad key"}}')
        if srv.behaviour == "html":
            return self._send(200, "<html>welcome to nginx</html>", "text/html")
        if srv.fail_first > 0:
            srv.fail_first -= 1
            return self._send(503, '{"error": "busy"}')
        prompt = body["messages"][-1]["content"]
        if srv.behaviour == "refuse":
            reply = "I'm sorry, but I can't help with that."
        elif prompt.startswith("Rewrite this question"):
            q = re.search(r"Question: (.*)\n", prompt).group(1)
            reply = json.dumps({"question": "Could you tell me: " + q.rstrip("?").lower() + "?"})
        elif "NEW question" in prompt:
            srv.seed_counter += 1
            n = srv.seed_counter % 3  # only 3 distinct pairs: the rest are duplicates to drop
            reply = "```json\n" + json.dumps({"question": f"Does policy {n} cover theft of bicycle {n}?",
                                              "answer": f"Yes, policy {n} covers it."}) + "\n```"  # fmt: skip
        elif prompt.startswith("Passage from"):
            reply = 'Sure! [{"question": "What is the excess?", "answer": "The excess is 200 euros."}, ' \
                    '{"question": "Who pays the towing?", "answer": "The insurer pays the towing."}]'  # fmt: skip
        elif prompt.startswith("Grade"):
            reply = '{"score": 2}' if "towing" in prompt else '{"score": 5}'
        else:
            reply = f"Answer from the strong model: {prompt[:40]}."
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        self._send(200, json.dumps({"choices": [choice], "usage": usage}))


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    srv = Endpoint(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def _url(srv: Endpoint) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def synth(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["lapidar", "data", "synth", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answer_mode_writes_rows_lapidar_reads_and_a_rerun_adds_nothing(monkeypatch, capsys, endpoint, data, tmp_path):
    out = tmp_path / "answers.jsonl"
    args = (str(data), "--output", str(out), "--base-url", _url(endpoint), "--model", "big", "--price-in", "1")
    code, stdout, err = synth(monkeypatch, capsys, *args, "--price-out", "2")
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 4 and all(r["messages"][-1]["content"].startswith("Answer from the strong model") for r in rows)
    assert {r["messages"][0]["content"] for r in rows} == {r["question"] for r in ROWS}  # in the order they came
    assert all(r["meta"]["synth_key"] for r in rows)
    assert (
        re.search(r"cost\W+0\.0001", stdout) and "Next: lapidar data check" in stdout
    )  # 40 in + 20 out tokens at 1 and 2 /M
    ds = load_dataset(out)
    assert ds.fmt == "messages" and len(ds.examples) == 4
    before = endpoint.requests
    code, stdout, _ = synth(monkeypatch, capsys, *args)
    assert code == 0 and endpoint.requests == before and len(_rows(out)) == 4  # every key done: no request, no row
    assert "inputs already done (skipped)" in stdout


def test_retries_then_limits_stop_cleanly(monkeypatch, capsys, endpoint, data, tmp_path):
    endpoint.fail_first = 2  # two 503s, then answers
    out = tmp_path / "a.jsonl"
    code, stdout, err = synth(
        monkeypatch, capsys, str(data), "--output", str(out), "--base-url", _url(endpoint), "--model", "m",
        "--max-rows", "2", "--concurrency", "1",
    )  # fmt: skip
    assert code == 0, err
    assert len(_rows(out)) == 2 and "--max-rows 2 reached" in stdout


def test_seeds_mode_drops_duplicates_and_records_why(monkeypatch, capsys, endpoint, data, tmp_path):
    out = tmp_path / "seeds.jsonl"
    code, _, err = synth(
        monkeypatch, capsys, str(data), "--mode", "seeds", "--output", str(out), "--base-url", _url(endpoint),
        "--model", "m", "--max-rows", "6", "--concurrency", "1",
    )  # fmt: skip
    assert code == 0, err
    questions = [r["messages"][0]["content"] for r in _rows(out)]
    assert len(questions) == len(set(questions)) == 3  # the endpoint only knows three pairs
    reasons = [json.loads(line)["reason"] for line in sidecar_path(out).read_text().splitlines()]
    assert reasons and set(reasons) <= {"duplicate", "near-duplicate"}


def test_paraphrase_keeps_answers_and_documents_record_their_passage(monkeypatch, capsys, endpoint, data, tmp_path):
    out = tmp_path / "para.jsonl"
    code, _, err = synth(
        monkeypatch, capsys, str(data), "--mode", "paraphrase", "--output", str(out), "--base-url", _url(endpoint),
        "--model", "m",
    )  # fmt: skip
    assert code == 0, err
    rows = _rows(out)
    assert sorted(r["messages"][-1]["content"] for r in rows) == sorted(r["answer"] for r in ROWS)
    assert all(r["messages"][0]["content"].startswith("Could you tell me") for r in rows)
    out = tmp_path / "para2.jsonl"
    code, _, err = synth(
        monkeypatch, capsys, str(data), "--mode", "paraphrase", "--regenerate-answers", "--output", str(out),
        "--base-url", _url(endpoint), "--model", "m",
    )  # fmt: skip
    assert code == 0, err
    assert all(r["messages"][-1]["content"].startswith("Answer from the strong model") for r in _rows(out))
    doc = tmp_path / "policy.md"
    doc.write_text("# Motor policy\n\nThe excess is 200 euros. The insurer pays the towing after an accident.\n")
    out = tmp_path / "docs.jsonl"
    code, _, err = synth(
        monkeypatch, capsys, str(doc), "--mode", "documents", "--output", str(out), "--base-url", _url(endpoint),
        "--model", "m", "--judge",
    )  # fmt: skip
    assert code == 0, err
    rows = _rows(out)
    assert [r["messages"][0]["content"] for r in rows] == ["What is the excess?"]  # the towing pair was judged 2/5
    assert (
        rows[0]["meta"]["source"]["file"].endswith("policy.md") and "200 euros" in rows[0]["meta"]["source"]["passage"]
    )
    reasons = [json.loads(line)["reason"] for line in sidecar_path(out).read_text().splitlines()]
    assert "judged 2/5" in reasons


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("401", "refused the API key (HTTP 401); set $OPENAI_API_KEY"), ("html", "did not answer like an OpenAI chat")],
)
def test_endpoint_errors_are_one_line_and_keep_written_rows(monkeypatch, capsys, endpoint, data, tmp_path, behaviour,
                                                            message):  # fmt: skip
    out = tmp_path / "a.jsonl"
    out.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a."}],
                               "meta": {"synth_key": "kept"}}) + "\n")  # fmt: skip
    endpoint.behaviour = behaviour
    code, _, err = synth(
        monkeypatch, capsys, str(data), "--output", str(out), "--base-url", _url(endpoint), "--model", "m"
    )
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _rows(out)[0]["meta"]["synth_key"] == "kept"


def test_a_wrong_url_gives_up_after_retries(monkeypatch, capsys, data, tmp_path):
    code, _, err = synth(
        monkeypatch, capsys, str(data), "--output", str(tmp_path / "a.jsonl"), "--base-url", "http://127.0.0.1:9/v1",
        "--model", "m", "--retries", "0",
    )  # fmt: skip
    assert code == 2 and "cannot reach http://127.0.0.1:9/v1/chat/completions" in err and "gave up after 1" in err


def test_refusals_are_dropped(monkeypatch, capsys, endpoint, data, tmp_path):
    endpoint.behaviour = "refuse"
    out = tmp_path / "a.jsonl"
    code, stdout, _ = synth(
        monkeypatch, capsys, str(data), "--output", str(out), "--base-url", _url(endpoint), "--model", "m"
    )
    assert code == 0 and out.read_text() == "" and "dropped: refused" in stdout


def test_reply_parsing_and_filters() -> None:
    assert parse_json_reply('Here you go:\n```json\n{"question": "a", "answer": "b"}\n```') == {"question": "a",
                                                                                                 "answer": "b"}  # fmt: skip
    assert parse_json_reply("[{bad json}] then [1, 2]") == [1, 2]
    assert parse_json_reply("no json at all") is None
    assert drop_reason("q", " ", None, True) == "empty"
    assert (
        drop_reason("Why?", "Because the policy says that the claim must be filed within the", None, True)
        == "truncated"
    )
    assert drop_reason("Is hail covered?", "Yes, with the weather add-on.", "en", True) is None


def test_max_cost_stops_cleanly(monkeypatch, capsys, endpoint, data, tmp_path):
    out = tmp_path / "a.jsonl"
    code, stdout, err = synth(
        monkeypatch, capsys, str(data), "--output", str(out), "--base-url", _url(endpoint), "--model", "m",
        "--concurrency", "1", "--price-in", "10000", "--max-cost", "0.15",
    )  # fmt: skip
    assert code == 0, err
    # each request costs 10 prompt tokens x 10000 / 1e6 = 0.1: the second one crosses 0.15 and the run stops there
    assert len(_rows(out)) == 2 and "--max-cost 0.15 reached" in " ".join(stdout.split())


def test_prompts_keys_resume_and_cost_are_pure(tmp_path):
    from lapidar.data.synth import Seen, SynthOptions, SynthResult, _done_keys, answer_task, document_task, seeds_task

    conv = [{"role": "user", "content": "Is hail covered?"}, {"role": "assistant", "content": "Yes."}]
    a, b = answer_task(conv, "Be brief."), answer_task(conv, None)
    assert a.key == b.key and a.key.startswith("answer:")  # the key depends on the input only: reruns find it
    assert (
        a.messages[0] == {"role": "system", "content": "Be brief."} and a.messages[-1]["content"] == "Is hail covered?"
    )
    assert a.make(" No. ") == [([conv[0], {"role": "assistant", "content": "No."}], {})]
    examples = [("q1?", "a1."), ("q2?", "a2."), ("q3?", "a3."), ("q4?", "a4.")]
    assert seeds_task(7, examples).messages == seeds_task(7, examples).messages  # same draw for the same index
    doc = document_task("docs/policy.md", 2, "Hail is covered with the weather add-on.", 1)
    assert doc.key == "doc:docs/policy.md#2" and "policy.md" in doc.messages[0]["content"]
    assert doc.make("not json") == "unparseable"
    [(_, meta)] = doc.make('[{"question": "Hail?", "answer": "With the add-on."}]')
    assert meta["source"] == {
        "file": "docs/policy.md",
        "chunk": 2,
        "passage": "Hail is covered with the weather add-on.",
    }
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"messages": conv, "meta": {"synth_key": "k1"}}) + "\n" + '{"messages": [{"ro')
    sidecar_path(out).write_text(json.dumps({"synth_key": "k2", "reason": "refused"}) + "\n")
    assert _done_keys(out) == ({"k1", "k2"}, ["Is hail covered?"])  # the half line a kill left is ignored
    seen = Seen(["Is hail covered?"], 0.8)
    assert seen.duplicate("is hail covered?") == "duplicate" and seen.duplicate("How do I file a claim?") is None
    opts = SynthOptions(out=out, price_in=2.0, price_out=8.0)
    assert SynthResult(prompt_tokens=500_000, completion_tokens=250_000).cost(opts) == pytest.approx(3.0)
