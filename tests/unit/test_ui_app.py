"""`lapidar ui`'s HTTP API through FastAPI's TestClient (a real app over a real workspace on disk)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from lapidar.config.schema import TrainConfig
from lapidar.ui.app import create_app

ROWS = [
    {"instruction": "What colour is the sky on a clear day?", "output": "Blue."},
    {"instruction": "How many legs has a spider?", "output": "Eight."},
    {"instruction": "Name the capital of France.", "output": "Paris."},
    {"instruction": "What is two plus three?", "output": "Five."},
]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(tmp_path / "ws"))


def test_schema_lists_every_trainconfig_field(client: TestClient) -> None:
    groups = client.get("/api/schema").json()["groups"]
    fields = {f["name"]: f for g in groups for f in g["fields"]}
    assert set(fields) == set(TrainConfig.model_fields)
    assert fields["scheduler"]["type"] == "choice"
    assert fields["scheduler"]["choices"] == ["cosine", "linear", "constant"]
    assert fields["lr"]["basic"] and fields["lr"]["type"] == "float" and fields["lr"]["min"] == 0
    assert fields["max_steps"]["type"] == "int" and fields["max_steps"]["nullable"]
    assert fields["target_modules"]["type"] == "list" and fields["target_modules"]["default"] == ["all-linear"]
    assert not fields["seed"]["basic"]
    assert client.get("/").status_code == 200
    assert "javascript" in client.get("/app.js").headers["content-type"]
    info = client.get("/api/info").json()
    assert "lora" in {m["name"] for m in info["methods"]} and info["presets"]


def test_token_is_required_when_set(tmp_path: Path) -> None:
    c = TestClient(create_app(tmp_path / "ws", token="s3cret"))
    r = c.get("/api/info")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert c.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/?token=s3cret").status_code == 200  # sets the cookie the page then sends
    assert c.get("/api/schema").status_code == 200


def test_paths_outside_the_workspace_are_refused(client: TestClient) -> None:
    r = client.post("/api/data/inspect", json={"path": "../x.jsonl"})
    assert r.status_code == 400 and "'..' is refused" in r.json()["error"]
    r = client.get("/api/runs/..%2Fetc")
    assert r.status_code in (400, 404)
    r = client.post("/api/data/upload", files={"file": ("../../evil.jsonl", b"{}\n")})
    assert r.status_code == 200 and r.json()["path"] == "data/evil.jsonl"  # only the base name is kept


def test_upload_then_inspect_detects_the_format(client: TestClient) -> None:
    body = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    r = client.post("/api/data/upload", files={"file": ("qa.jsonl", body)})
    assert r.status_code == 200, r.text
    path = r.json()["path"]
    assert [f["path"] for f in client.get("/api/data").json()["files"]] == [path]
    r = client.post("/api/data/inspect", json={"path": path})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["format"] == "alpaca" and out["rows"] == len(ROWS)
    assert out["examples"][0]["messages"][-1]["content"] == "Blue."
    assert all({"severity", "title", "fix"} <= set(f) for f in out["report"]["findings"])
    r = client.post("/api/data/inspect", json={"path": "data/missing.jsonl"})
    assert r.status_code == 400 and "no such file" in r.json()["error"]


def test_config_yaml_round_trip_and_bad_values(client: TestClient) -> None:
    config = {"data": "example:claims", "lr": 0.001, "max_steps": 5, "scheduler": "linear"}
    r = client.post("/api/config/yaml", json={"config": config})
    assert r.status_code == 200, r.text
    back = client.post("/api/config/parse", json={"yaml": r.json()["yaml"]}).json()["config"]
    assert {k: back[k] for k in config} == config
    r = client.post("/api/config/yaml", json={"config": {"lr": -1}})
    assert r.status_code == 400 and "lr" in r.json()["error"]
    r = client.post("/api/config/parse", json={"yaml": "scheduler: sawtooth\n"})
    assert r.status_code == 400 and "scheduler" in r.json()["error"]
    r = client.post("/api/config/parse", json={"yaml": "lr: [1\n"})
    assert r.status_code == 400 and "not valid YAML" in r.json()["error"]


def test_ui_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    code = (
        "import sys, typer\n"
        "from lapidar.commands.ui import ui\n"
        "from lapidar.errors import UserError\n"
        "app = typer.Typer()\n"
        "app.command()(ui)\n"
        "try:\n"
        "    app(['--host', '0.0.0.0', '--no-browser', '--workspace', sys.argv[1]])\n"
        "except UserError as e:\n"
        "    sys.stderr.write(f'error: {e}\\n'); sys.exit(2)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "LAPIDAR_UI_TOKEN"}
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ws")], capture_output=True, text=True, timeout=60, env=env
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "LAPIDAR_UI_TOKEN" in lines[0] and "--token" in lines[0]
    assert not (tmp_path / "ws").exists()  # refused before anything was created


def test_a_train_job_runs_and_its_metrics_show(tmp_path: Path) -> None:
    app = create_app(tmp_path / "ws")
    c = TestClient(app)
    config = {"data": "example:claims", "max_steps": 2, "batch_size": 2, "max_length": 128, "eval_steps": 1}
    r = c.post("/api/jobs", json={"kind": "train", "config": config, "name": "first"})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["argv"][-4:] == ["train", "configs/first.yaml", "--output", "runs/first"]
    r = c.post("/api/jobs", json={"kind": "train", "config": config, "name": "first"})
    assert r.status_code == 400 and "exists already" in r.json()["error"]
    done = app.state.jobs.wait(job["id"], timeout=240)
    log = (tmp_path / "ws" / "runs" / "first" / "train.log").read_text(errors="replace")
    assert done["status"] == "done", log[-3000:]
    detail = c.get("/api/runs/first").json()
    assert detail["status"] == "done" and detail["summary"]["steps"] == 2
    assert any("train_loss" in m for m in detail["metrics"]) and any("val_loss" in m for m in detail["metrics"])
    assert detail["log"] and detail["config"]["max_steps"] == 2
    again = c.get(f"/api/runs/first?metrics_from={detail['next_metrics']}&log_from={detail['next_log']}").json()
    assert again["metrics"] == [] and again["log"] == ""
    runs = c.get("/api/runs").json()["runs"]
    assert [r["name"] for r in runs] == ["first"] and runs[0]["steps"] == 2
    assert [j["status"] for j in c.get("/api/jobs").json()["jobs"]] == ["done"]
    # A second run (a copy with another learning rate) to compare with: curves of both, the differing field only.
    runs_dir = tmp_path / "ws" / "runs"
    shutil.copytree(runs_dir / "first", runs_dir / "second")
    cfg = yaml.safe_load((runs_dir / "second" / "config.yaml").read_text())
    (runs_dir / "second" / "config.yaml").write_text(yaml.safe_dump({**cfg, "lr": 0.5}))
    cmp = c.get("/api/compare?runs=first,second").json()
    assert set(cmp["curves"]) == {"first", "second"} and cmp["curves"]["first"]
    assert [d["field"] for d in cmp["config_diff"]] == ["lr"]
    assert c.get("/api/compare?runs=first").status_code == 400


def test_clean_and_split_write_new_files_in_data(client: TestClient) -> None:
    rows = [*ROWS, ROWS[0], {"instruction": "Write to me", "output": "Mail me at jane.doe@example.com please."}]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path = client.post("/api/data/upload", files={"file": ("raw.jsonl", body)}).json()["path"]
    fixes = client.post("/api/data/inspect", json={"path": path}).json()["fixes"]
    assert "mask_pii" in {f["key"] for f in fixes}
    r = client.post("/api/data/clean", json={"path": path, "fixes": ["mask_pii"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["path"] == "data/raw-clean.jsonl" and any("kept 5 of 6 rows" in c for c in out["changes"])
    cleaned = client.post("/api/data/inspect", json={"path": out["path"]}).json()
    assert cleaned["rows"] == 5
    text = (client.app.state.workspace.root / out["path"]).read_text()
    assert "[EMAIL]" in text and "jane.doe" not in text
    assert any(seg["learned"] for seg in cleaned["examples"][0]["segments"])
    r = client.post("/api/data/clean", json={"path": path, "fixes": ["everything"]})
    assert r.status_code == 400 and "unknown fix" in r.json()["error"]
    r = client.post("/api/data/split", json={"path": out["path"], "fraction": 0.4})
    assert r.status_code == 200, r.text
    split = r.json()
    assert split["train_rows"] + split["validation_rows"] == 5 and split["validation_rows"] >= 1
    files = {f["path"] for f in client.get("/api/data").json()["files"]}
    assert {split["train"], split["validation"], path, out["path"]} <= files


def test_estimate_gives_a_verdict_and_fixes_the_form_can_apply(client: TestClient) -> None:
    big = {"data": "example:claims", "model": "qwen2.5-7b-instruct", "method": "full", "batch_size": 64}
    r = client.post("/api/estimate", json={"config": big})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["verdict"] == "does-not-fit" and out["peak_gib"] > out["capacity_gib"]
    assert out["fixes"] and all(set(f["changes"]) <= set(TrainConfig.model_fields) for f in out["fixes"])
    fixed = {**big, **out["fixes"][0]["changes"]}
    assert client.post("/api/estimate", json={"config": fixed}).json()["verdict"] in ("fits", "tight")
    r = client.post("/api/estimate", json={"config": {"data": "../secret.jsonl"}})
    assert r.status_code == 400 and "'..' is refused" in r.json()["error"]


def test_an_upload_above_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    c = TestClient(create_app(tmp_path / "ws", max_upload_bytes=1000))
    r = c.post("/api/data/upload", files={"file": ("big.jsonl", b"x" * 5000)})
    assert r.status_code == 413 and "upload limit" in r.json()["error"]
    assert c.get("/api/data").json()["files"] == []  # nothing half-written left behind


def test_a_failing_job_is_failed_and_a_queued_one_can_be_cancelled(tmp_path: Path) -> None:
    app = create_app(tmp_path / "ws")
    c = TestClient(app)
    config = {"data": "data/nope.jsonl", "max_steps": 1}
    first = c.post("/api/jobs", json={"kind": "train", "config": config, "name": "broken"}).json()["job"]
    second = c.post("/api/jobs", json={"kind": "train", "config": config, "name": "later"}).json()["job"]
    assert first["status"] == "running" and second["status"] == "queued"  # one job at a time
    stopped = c.post(f"/api/jobs/{second['id']}/stop").json()["job"]
    assert stopped["status"] == "stopped" and stopped["started"] is None
    done = app.state.jobs.wait(first["id"], timeout=120)
    assert done["status"] == "failed" and done["returncode"] == 2
    log = c.get("/api/runs/broken").json()["log"]
    assert "error:" in log and "nope.jsonl" in log and "Traceback" not in log
    assert c.post("/api/jobs/no-such-job/stop").status_code == 400
    r = c.post("/api/jobs", json={"kind": "export", "run": "broken", "format": "onnx"})
    assert r.status_code == 400 and "merged, gguf, ollama" in r.json()["error"]
    r = c.post("/api/jobs", json={"kind": "eval", "run": "absent", "data": "data/x.jsonl"})
    assert r.status_code == 400 and "no run 'absent'" in r.json()["error"]
    r = c.post("/api/jobs", json={"kind": "dance"})
    assert r.status_code == 400 and "not supported" in r.json()["error"]


def test_the_rows_a_finding_names_can_be_read(client: TestClient) -> None:
    rows = [*ROWS, ROWS[0]]  # an exact duplicate: a finding naming lines 1 and 5
    client.post("/api/data/upload", files={"file": ("dup.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())})
    report = client.post("/api/data/inspect", json={"path": "data/dup.jsonl"}).json()["report"]
    named = next(f["rows"] for f in report["findings"] if "line 5" in f["rows"])
    out = client.post("/api/data/rows", json={"path": "data/dup.jsonl", "refs": [*named, "line 99"]}).json()["rows"]
    assert out[0]["value"] == ROWS[0] or out[-2]["value"] == ROWS[0]
    assert any(s["learned"] and s["text"] == "Blue." for s in out[-2]["segments"])
    assert out[-1] == {"ref": "line 99", "value": None, "notes": ["not a row of data/dup.jsonl"], "segments": []}
    r = client.post("/api/data/rows", json={"path": "data/dup.jsonl", "refs": []})
    assert r.status_code == 400 and "refs:" in r.json()["error"]
