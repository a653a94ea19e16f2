"""The quickstart's bundled claim-routing data: reproducible from its templates, balanced, and held out for real."""

from __future__ import annotations

import json
from collections import Counter

from lapidar.data.formats import bundled_example, load_examples
from lapidar.recipes import routing_data


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_shipped_files_are_what_the_generator_builds():
    train_path, val_path = bundled_example("claims-routing")
    train, held_out = routing_data.build()
    # A template edited without `python -m lapidar.recipes.routing_data` would make the shipped files stale.
    assert _read(train_path) == train
    assert _read(val_path) == held_out


def test_sizes_balance_and_answers():
    train, held_out = routing_data.build()
    assert len(train) == 400 and len(held_out) == 60
    for rows, per_team in ((train, 80), (held_out, 12)):
        teams = Counter(r["messages"][-1]["content"] for r in rows)
        assert teams == dict.fromkeys(routing_data.TEAMS, per_team)


def test_held_out_claims_are_not_training_claims():
    train, held_out = routing_data.build()
    seen = {r["messages"][1]["content"].lower() for r in train}
    assert not [r for r in held_out if r["messages"][1]["content"].lower() in seen]
    # Varied phrasings: no two rows say the same thing.
    claims = [r["messages"][1]["content"] for r in train + held_out]
    assert len(set(claims)) == len(claims)


def test_bundled_files_load_as_chat_rows():
    train_path, val_path = bundled_example("claims-routing")
    train, fmt = load_examples(train_path)
    val, _ = load_examples(val_path)
    assert fmt == "messages" and len(train) == 400 and len(val) == 60
    assert {ex.messages[-1]["content"] for ex in val} == set(routing_data.TEAMS)
