"""Several training processes on CPU (torchrun + gloo, DDP through accelerate) train what one process would.

`--nproc 2 --batch-size 2` must give the losses of one process with `--batch-size 4`: the global batches are the
same rows, and token counts are summed over the processes before the gradients are normalised. Only process 0
writes: metrics.jsonl holds one row per step. The same run started by torchrun itself (one machine, or two
"nodes" with a local rendezvous) works unchanged, and a killed 2-process run resumes exactly. The sharding strategies
(torch FSDP2, DeepSpeed ZeRO-2/3) run on CPU too and train what one process trains.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import FIXTURES, qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe

STEPS = ["--lr", "2e-3", "--seed", "5", "--log-steps", "1", "--eval-steps", "10"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lapidar", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run) -> list[float]:
    return [r["train_loss"] for r in metrics(run) if "train_loss" in r]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("ddp") / "qa.jsonl", qa_rows(PAIRS))


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("one") / "run"
    args = ["train", "--data", str(data), "--max-steps", "20", "--batch-size", "4", *STEPS, "--output", str(run)]
    subprocess.run(cli(*args), check=True, capture_output=True, timeout=900, env=env())
    return run


def test_two_processes_train_what_one_process_trains(data, one_process, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--max-steps", "20", "--batch-size", "2", "--nproc", "2", *STEPS]
    proc = subprocess.run(cli(*args, "--output", str(run)), capture_output=True, text=True, timeout=900, env=env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "2 processes (global batch 4)" in proc.stdout

    one, two = train_losses(one_process), train_losses(run)
    assert len(two) == 20, "metrics.jsonl must hold one row per step, not one per process"
    assert [r["step"] for r in metrics(run)] == [r["step"] for r in metrics(one_process)]
    assert two[0] == pytest.approx(one[0], abs=1e-3)
    assert two[-1] == pytest.approx(one[-1], rel=0.02)
    assert two[-1] < two[0] - 0.5, "the loss must fall"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 20

    # The adapter is a plain peft adapter.
    from peft import PeftModel

    from lapidar.models.loading import load_model, resolve_model

    PeftModel.from_pretrained(load_model(resolve_model("tiny-qwen2.5")), str(run / "adapter"))


def test_fsdp_shards_and_trains_what_one_process_trains(data, one_process, tmp_path):
    # torch's FSDP2 on CPU (gloo): each process holds half of every weight; the losses are those of one process.
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--max-steps", "20", "--batch-size", "2", "--nproc", "2", *STEPS]
    proc = subprocess.run(
        cli(*args, "--strategy", "fsdp", "--output", str(run)), capture_output=True, text=True, timeout=900, env=env()
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "2 processes (global batch 4)" in proc.stdout and "FSDP2: weights, gradients and optimiser" in proc.stdout
    one, two = train_losses(one_process), train_losses(run)
    assert len(two) == 20 and two[0] == pytest.approx(one[0], abs=1e-3)
    assert two[-1] == pytest.approx(one[-1], rel=0.02)
    # Checkpoints hold each process's optimiser shard (torch.distributed.checkpoint), never the whole state.
    checkpoint = next((run / "checkpoints").glob("step-*"))
    assert len(list((checkpoint / "fsdp").glob("*.distcp"))) == 2 and (checkpoint / "fsdp" / ".metadata").is_file()
    assert not list((run / "checkpoints").glob(".engine-*")), "the shards' staging directory is removed"
    # The adapter on disk is whole (gathered from the shards), a plain peft adapter.
    from peft import PeftModel

    from lapidar.models.loading import load_model, resolve_model

    model = PeftModel.from_pretrained(load_model(resolve_model("tiny-qwen2.5")), str(run / "adapter"))
    r = json.loads((run / "adapter" / "adapter_config.json").read_text())["r"]
    a = model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
    assert a.shape == (r, model.config.hidden_size) and a.abs().sum() > 0


@pytest.mark.parametrize("strategy", ["zero3", pytest.param("zero2", marks=pytest.mark.slow)])
def test_deepspeed_zero_trains_what_one_process_trains(data, one_process, tmp_path, strategy):
    # DeepSpeed's engine on CPU (gloo): ZeRO-2 shards gradients and optimiser states, ZeRO-3 the weights too.
    pytest.importorskip("deepspeed")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--max-steps", "20", "--batch-size", "2", "--nproc", "2", *STEPS]
    proc = subprocess.run(
        cli(*args, "--strategy", strategy, "--output", str(run)), capture_output=True, text=True, timeout=900,
        env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"DeepSpeed ZeRO-{strategy[-1]}: " in proc.stdout and "2 processes (global batch 4)" in proc.stdout
    one, two = train_losses(one_process), train_losses(run)
    assert len(two) == 20 and two[0] == pytest.approx(one[0], abs=1e-3)
    assert two[-1] == pytest.approx(one[-1], rel=0.02)
    # The checkpoint holds DeepSpeed's own shards (one optimiser file per process); the adapter is whole.
    engine = next((run / "checkpoints").glob("step-*")) / "deepspeed" / "state"
    assert len(list(engine.glob("*optim_states.pt"))) == 2
    from peft import PeftModel

    from lapidar.models.loading import load_model, resolve_model

    PeftModel.from_pretrained(load_model(resolve_model("tiny-qwen2.5")), str(run / "adapter"))


def test_accelerate_launch_with_its_fsdp_flag_runs_fsdp(data, one_process, tmp_path):
    # `accelerate launch --use_fsdp` (its own launcher, 2 processes on this CPU): the run trains under FSDP2, says
    # so, and its first step is the one of one process with the global batch.
    run = tmp_path / "run"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    args = ["train", "--data", str(data), "--max-steps", "2", "--batch-size", "2", *STEPS, "--output", str(run)]
    proc = subprocess.run(
        [*launcher, "--use_fsdp", "-m", "lapidar", *args], capture_output=True, text=True, timeout=900, env=env()
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "training with --strategy fsdp" in proc.stdout and "FSDP2: weights, gradients" in proc.stdout
    assert "2 processes (global batch 4)" in proc.stdout
    assert train_losses(run)[0] == pytest.approx(train_losses(one_process)[0], abs=1e-3)
    assert "strategy: fsdp" in (run / "config.yaml").read_text(), "a --resume must use the launcher's strategy"


def test_fsdp_full_fine_tune_gathers_the_whole_model(data, tmp_path):
    # Full fine-tuning sharded over 2 processes ends with the weights one process would have (gathered for saving).
    args = ["train", "--data", str(data), "--method", "full", "--lr", "1e-4", "--max-steps", "3", *STEPS[2:]]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(cli(*args, "--batch-size", "4", "--output", str(one)), check=True, capture_output=True,
                   timeout=900, env=env())  # fmt: skip
    proc = subprocess.run(
        cli(*args, "--batch-size", "2", "--nproc", "2", "--strategy", "fsdp", "--output", str(two)),
        capture_output=True, text=True, timeout=900, env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert train_losses(two) == pytest.approx(train_losses(one), abs=1e-4)
    from safetensors.torch import load_file

    a, b = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    initial = load_file(str(resolve_tiny() / "model.safetensors"))
    moved = [k for k in a if k in initial and not initial[k].equal(b[k])]
    assert len(moved) > len(a) // 2, "the saved weights are the trained ones"


def resolve_tiny():
    from lapidar.models.loading import resolve_model

    return resolve_model("tiny-qwen2.5").path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_nodes_with_a_local_rendezvous(data, one_process, tmp_path):
    # Two "machines" of one process each, started the way a cluster runs torchrun on every node; the run
    # directory is shared storage (here: the same disk).
    run, port = tmp_path / "run", _port()
    args = ["train", "--data", str(data), "--max-steps", "4", "--batch-size", "2", *STEPS, "--output", str(run)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--master-addr=127.0.0.1", f"--master-port={port}"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [*torchrun, f"--node-rank={rank}", "-m", "lapidar", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=900) for node in nodes]
    assert all(node.returncode == 0 for node in nodes), outputs
    assert "2 processes (global batch 4)" in outputs[0][0] and "Training" not in outputs[1][0]
    # Step 1's loss comes before any update (the 4-step schedule differs from the 20-step one after it).
    losses = train_losses(run)
    assert len(losses) == 4 and losses[0] == pytest.approx(train_losses(one_process)[0], abs=1e-3)


def test_bad_data_fails_once_in_the_launcher(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Is fire covered?"}\n')
    proc = subprocess.run(
        cli("train", "--data", str(bad), "--nproc", "2", "--output", str(tmp_path / "run")),
        capture_output=True, text=True, timeout=300, env=env(),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}: line 1" in proc.stderr and "Starting 2 training processes" not in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3"])
def test_kill_9_of_two_processes_then_resume_matches(data, tmp_path, strategy):
    if strategy.startswith("zero"):
        pytest.importorskip("deepspeed")
    common = ["train", "--data", str(data), "--max-steps", "8", "--batch-size", "2", "--nproc", "2",
              "--save-steps", "4", "--strategy", strategy, *STEPS]  # fmt: skip
    straight = tmp_path / "straight"
    subprocess.run(cli(*common, "--output", str(straight)), check=True, capture_output=True, timeout=900, env=env())

    killed = tmp_path / "killed"
    # The launcher, torchrun and both processes are one process group: a machine that dies takes all of them.
    proc = subprocess.Popen(
        cli(*common, "--output", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env(), start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "step-000004" / "trainer_state.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run(
        cli("train", "--resume", str(killed)), capture_output=True, text=True, timeout=900, env=env()
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout
    assert [r["step"] for r in metrics(killed)] == [r["step"] for r in metrics(straight)]
    assert train_losses(killed) == pytest.approx(train_losses(straight), rel=1e-4)


@pytest.mark.parametrize("strategy", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_process_dpo_trains(tmp_path, strategy):
    data = FIXTURES / "preference" / "pairs_train.jsonl"
    run = tmp_path / "run"
    proc = subprocess.run(
        cli("train", "--data", str(data), "--objective", "dpo", "--max-steps", "3", "--batch-size", "2",
            "--nproc", "2", "--strategy", strategy, *STEPS, "--output", str(run)),
        capture_output=True, text=True, timeout=900, env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert len(train_losses(run)) == 3 and (run / "adapter").is_dir()
    assert "2 processes (global batch 4)" in proc.stdout


@pytest.mark.slow
def test_ray_train_on_a_local_cluster_writes_one_run_directory(data, tmp_path):
    # A Ray cluster of one head node with 2 CPUs, started as a user would (`ray start --head`), found through
    # RAY_ADDRESS; Ray Train's TorchTrainer runs 2 workers.
    pytest.importorskip("ray.train")
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _port()
    # A throwaway cluster on loopback: no auth token to share between `ray start` and the client.
    cluster_env = {**env(), "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "disabled"}
    subprocess.run([ray, "start", "--head", "--num-cpus", "2", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false"],
                   check=True, capture_output=True, timeout=180, env=cluster_env)  # fmt: skip
    try:
        run = tmp_path / "run"
        proc = subprocess.run(
            cli("train", "--data", str(data), "--max-steps", "3", "--batch-size", "2", "--nproc", "2",
                "--launcher", "ray", *STEPS, "--output", str(run)),
            capture_output=True, text=True, timeout=600, env=cluster_env,
        )  # fmt: skip
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=cluster_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Starting 2 Ray Train workers" in proc.stdout
    assert "2 processes (global batch 4)" in proc.stdout + proc.stderr
    rows = metrics(run)
    assert [r["step"] for r in rows if "train_loss" in r] == [1, 2, 3], "one metrics row per step, not per worker"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and (run / "adapter" / "adapter_config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "one run directory"


def test_resume_with_another_number_of_processes_is_refused(data, tmp_path):
    # A checkpoint of 2 processes resumed by 1: its global steps were 2 x batch_size rows; refused in one line.
    import torch
    from rich.console import Console

    from lapidar.config import TrainConfig
    from lapidar.errors import UserError
    from lapidar.recipes import train
    from lapidar.training.checkpoint import STATE_FILE, latest_checkpoint

    cfg = TrainConfig(data=str(data), max_steps=2, save_steps=1, batch_size=2, output=str(tmp_path / "run"))
    _, run = train.main(cfg, Console(quiet=True))
    state_file = latest_checkpoint(run) / STATE_FILE
    state = torch.load(state_file, weights_only=False)
    assert state["processes"] == 1
    torch.save({**state, "processes": 2}, state_file)
    with pytest.raises(UserError, match=r"written by 2 training processes and this run has 1; resume it with 2"):
        train.main(train.resume_config(run), Console(quiet=True), resume=run)
