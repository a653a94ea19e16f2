"""`lapidar bench` pieces that need no training: the synthesised data and the comparison arithmetic."""

from __future__ import annotations

import pytest

from lapidar.recipes.bench import compare, synth_conversations

ROWS = [
    {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"a{i}"},
        ]
    }
    for i in range(10)
]


def test_synthesised_conversations_are_deterministic_multi_turn_and_mixed():
    a = synth_conversations(ROWS, 400, seed=3)
    assert a == synth_conversations(ROWS, 400, seed=3)
    assert a != synth_conversations(ROWS, 400, seed=4)
    turns = [sum(m["role"] == "assistant" for m in c["messages"]) for c in a]
    assert min(turns) == 1 and max(turns) == 8
    # Skewed like chat logs: about half single-turn, mean near 2.3 turns.
    assert 0.4 < turns.count(1) / len(turns) < 0.6
    assert 1.9 < sum(turns) / len(turns) < 2.7
    uniform = synth_conversations(ROWS, 400, seed=3, skew=0.0)
    assert 3.9 < sum(sum(m["role"] == "assistant" for m in c["messages"]) for c in uniform) / 400 < 5.1
    for c in a:
        roles = [m["role"] for m in c["messages"]]
        assert roles[0] == "system" and roles.count("system") == 1
        assert roles[1:] == ["user", "assistant"] * (len(roles) // 2)


def _result(seconds: float, losses: list[float], peak: float) -> dict:
    steps = [{"step": s, "seconds": seconds, "train_loss": 10 - s / 10} for s in range(1, 7)]
    evals = [{"step": s, "val_loss": v, "seconds": 1.0} for s, v in zip((0, 3, 6), losses, strict=True)]
    return {
        "steps": steps,
        "evals": evals,
        "tokens": [100] * 6,
        "n_params": 1000,
        "precision": "fp32",
        "load_s": 1.0,
        "peak_rss_mib": peak,
    }


def test_compare_times_steps_3_to_n_and_finds_the_common_validation_loss():
    out = compare(
        {"plain": _result(2.0, [12.0, 11.0, 10.0], 1000.0), "lapidar": _result(1.0, [12.0, 10.9, 9.8], 500.0)},
        {"bf16": 1.0, "fp32": 1.0},
    )
    assert out["stacks"]["plain"]["tokens_per_s"] == pytest.approx(50.0)  # 400 tokens of steps 3..6 in 8 s
    assert out["ratios"]["tokens_per_s"] == pytest.approx(2.0)
    assert out["ratios"]["peak_rss"] == pytest.approx(0.5)
    assert out["target_val_loss"] == 10.0  # the best loss both reached
    assert out["stacks"]["plain"]["time_to_target_s"] == pytest.approx(12.0)
    assert out["stacks"]["lapidar"]["time_to_target_s"] == pytest.approx(6.0)
