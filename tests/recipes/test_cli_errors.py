"""Bad input is normal input: one line on stderr naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import qa_rows, write_jsonl


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=300)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def good_data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("d") / "ok.jsonl", qa_rows([("q", "a")] * 6))


def test_missing_data_file(tmp_path):
    assert_user_error(run_cli("train", "--data", str(tmp_path / "nope.jsonl")), "data file not found", "nope.jsonl")


def test_unknown_preset(good_data, tmp_path):
    proc = run_cli("train", "--model", "qwen-13b", "--data", str(good_data), "--output", str(tmp_path / "r"))
    assert_user_error(proc, "unknown model 'qwen-13b'", "tiny-qwen2.5")


def test_unknown_method(good_data):
    assert_user_error(run_cli("train", "--method", "magic", "--data", str(good_data)), "unknown method 'magic'", "lora")


def test_unknown_config_key(good_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {good_data}\nlearning_rate: 0.1\n")
    assert_user_error(run_cli("train", str(cfg)), "unknown config key 'learning_rate'", "valid keys")


def test_bad_value(good_data):
    assert_user_error(run_cli("train", "--data", str(good_data), "--lr", "-1"), "lr", "greater than 0")


def test_broken_jsonl_row_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n{oops\n')
    assert_user_error(run_cli("train", "--data", str(bad)), "bad.jsonl: line 2", "not valid JSON")


def test_row_without_answer_names_row(tmp_path):
    rows = [*qa_rows([("q", "a")]), {"messages": [{"role": "user", "content": "only a question"}]}]
    bad = write_jsonl(tmp_path / "noanswer.jsonl", rows)
    assert_user_error(run_cli("train", "--data", str(bad)), "noanswer.jsonl: line 2", "no assistant message")


def test_generate_on_a_non_run_directory(tmp_path):
    assert_user_error(run_cli("generate", str(tmp_path), "--prompt", "hi"), "neither a lapidar run directory")


def test_failed_setup_leaves_no_run_directory(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    run_cli("train", "--data", str(bad), "--output", str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
