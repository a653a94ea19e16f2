"""`lapidar export` end to end: train tiny-qwen2.5 with LoRA, export it, and load the result with other tools.

The merged folder is opened with plain transformers, the GGUF files with llama-cpp-python; both must answer like
the run itself (`lapidar generate RUN`), which is what a user checks first after exporting.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import qa_rows, write_jsonl

pytestmark = pytest.mark.recipe

PAIRS = [
    ("What colour is the sky?", "The sky is blue."),
    ("What is 2 + 2?", "2 + 2 is 4."),
    ("Name a fruit.", "An apple is a fruit."),
    ("Where do fish live?", "Fish live in water."),
    ("Say hello.", "Hello there!"),
]


def lapidar(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}  # result tables on one line each
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=600, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def trained_run(tmp_path_factory) -> Path:
    """A LoRA run on tiny-qwen2.5 that has memorised PAIRS; trained once per test session, shared by the
    export, predict and serve tests (each file carries this helper; the first one to run trains)."""
    root = tmp_path_factory.getbasetemp() / "lapidar-export-run"
    run = root / "run"
    if not (run / "summary.json").is_file():
        root.mkdir(exist_ok=True)
        data = write_jsonl(root / "qa.jsonl", qa_rows(PAIRS))
        lapidar(
            "train", "--model", "tiny-qwen2.5", "--data", str(data), "--val-data", str(data), "--max-steps", "30",
            "--lr", "2e-3", "--batch-size", "5", "--eval-steps", "30", "--seed", "3", "--output", str(run),
        )  # fmt: skip
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run_answers(run) -> dict[str, str]:
    """What the run itself answers (greedy), through lapidar's own inference path."""
    from lapidar.inference.generate import SamplingOptions, generate, load_for_inference

    loaded = load_for_inference(str(run))
    return {q: generate(loaded, [{"role": "user", "content": q}], SamplingOptions(32))[0] for q, _ in PAIRS[:3]}


def llama_cpp_or_skip():
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama-cpp-python is not installed (pip install 'lapidar[export]' compiles it)")
    return llama_cpp


def test_merged_folder_chats_in_plain_transformers(run, run_answers, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    proc = lapidar("export", str(run), "--format", "merged", "--output", str(out))
    assert "Equivalence check" in proc.stdout and "FAIL" not in proc.stdout
    assert "greedy answers identical" in proc.stdout

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert not any(k.startswith("lm_head") for k in names)  # one shared matrix on disk
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]
    for question, expected in run_answers.items():
        ids = tok.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=32, do_sample=False)
        answer = tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert answer == expected
    assert "RANDOMLY INITIALISED" in (out / "README.md").read_text()

    from lapidar.models.loading import resolve_model

    assert resolve_model(str(out)).random_init  # `lapidar chat DIR` keeps labelling the random weights


def test_gguf_f16_answers_like_the_run_in_llama_cpp(run, run_answers, tmp_path):
    llama_cpp = llama_cpp_or_skip()
    out = tmp_path / "gguf"
    proc = lapidar("export", str(run), "--format", "gguf", "--quant", "f16", "--output", str(out))
    table = proc.stdout
    assert re.search(r"greedy tokens identical\s*│\s*3/3", table), table
    assert re.search(r"tokenizer \(llama\.cpp vs HF ids\)\s*│\s*identical", table), table
    assert "FAIL" not in table
    (path,) = out.glob("*.gguf")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    for question, expected in run_answers.items():
        reply = llm.create_chat_completion([{"role": "user", "content": question}], temperature=0.0, max_tokens=32)
        assert reply["choices"][0]["message"]["content"] == expected  # GGUF's own chat template and stop token
    llm.close()


def test_ollama_q4_k_m_export(run, tmp_path):
    llama_cpp_or_skip()
    out = tmp_path / "ollama"
    proc = lapidar(
        "export", str(run), "--format", "ollama", "--quant", "q4_k_m", "--name", "Tiny Run", "--output", str(out)
    )
    assert f"ollama create tiny-run -f {out / 'Modelfile'}" in proc.stdout
    modelfile = (out / "Modelfile").read_text()
    gguf_name = re.search(r"^FROM \./(\S+)$", modelfile, re.M).group(1)
    assert (out / gguf_name).is_file() and gguf_name.endswith("-q4_k_m.gguf")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "RANDOMLY INITIALISED" in modelfile
    record = json.loads((out / "lapidar_export.json").read_text())
    agreement = next(c for c in record["checks"] if c["name"].startswith("top-1 agreement"))
    rate = float(agreement["value"].split("%")[0])
    assert rate >= 90.0, agreement


def test_no_verify_and_user_errors(run, tmp_path):
    from lapidar.errors import UserError
    from lapidar.recipes.export import ExportOptions, setup

    proc = lapidar("export", str(run), "--format", "nope", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown export format 'nope'; valid choices: gguf, merged, ollama"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    proc = lapidar("export", str(run), "--output", str(taken), check=False)
    assert proc.returncode == 2 and "not an earlier lapidar export" in proc.stderr
    assert (taken / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match="valid choices: bf16, f16, f32, q4_k_m"):
        setup(ExportOptions(str(run), format="gguf", quant="q3"))
    with pytest.raises(UserError, match="applies to --format gguf"):
        setup(ExportOptions(str(run), quant="q8_0"))
    with pytest.raises(UserError, match="expected a directory"):
        setup(ExportOptions(str(run), format="gguf", output=tmp_path / "model.gguf"))
    assert setup(ExportOptions(str(run))).output == run / "export" / "merged"
    with pytest.raises(UserError, match="not a lapidar run directory"):
        from lapidar.export.merged import open_source

        open_source(str(tmp_path))
