"""Write a deterministic 100,000-row chat file for timing `lapidar data check` (bench/data_check_speed.py).

    python bench/make_data_100k.py [OUT.jsonl] [ROWS]     # default /tmp/lapidar-data-100k.jsonl, 100000 rows

Rows are messages-format conversations built from a fixed vocabulary (one or two turns, some with a system
prompt), with about 2% exact duplicates and 3% near-duplicates (one word changed) seeded in, so every check,
near-duplicate search included, has real work to do. The same arguments always give the same bytes.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

_WORDS_TEXT = (
    "policy claim deductible coverage vehicle home flood fire theft premium renewal invoice payment refund agent "
    "office window roof water damage report form deadline customer account address email phone number limit "
    "annual monthly quote discount driver accident glass repair estimate adjuster inspection photo receipt bank "
    "transfer card approved denied pending review appeal document signature copy travel medical dental pet"
)
WORDS = _WORDS_TEXT.split()
TOPICS = ("auto", "home", "travel", "health", "pet", "business", "life", "renters")
SYSTEM = "You are a helpful assistant for an insurance company. Answer briefly and cite the policy section."


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + rng.choice(".!?" if n > 3 else ".")


def _row(rng: random.Random, i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    question = f"[{topic} #{i}] " + " ".join(_sentence(rng, rng.randint(5, 14)) for _ in range(rng.randint(1, 3)))
    answer = " ".join(_sentence(rng, rng.randint(6, 20)) for _ in range(rng.randint(1, 6)))
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if rng.random() < 0.25:  # a follow-up turn
        messages += [
            {"role": "user", "content": _sentence(rng, rng.randint(4, 10))},
            {"role": "assistant", "content": _sentence(rng, rng.randint(6, 25))},
        ]
    if rng.random() < 0.5:
        messages.insert(0, {"role": "system", "content": SYSTEM})
    return {"messages": messages}


def _near(rng: random.Random, row: dict) -> dict:
    """The same conversation with one word of the last answer changed."""
    messages = [dict(m) for m in row["messages"]]
    words = messages[-1]["content"].split()
    words[rng.randrange(len(words))] = rng.choice(WORDS)
    messages[-1]["content"] = " ".join(words)
    return {"messages": messages}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` rows: ~95% distinct, ~2% exact copies and ~3% near copies of earlier rows."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        r = rng.random()
        if rows and r < 0.02:
            rows.append(rows[rng.randrange(len(rows))])
        elif rows and r < 0.05:
            rows.append(_near(rng, rows[rng.randrange(len(rows))]))
        else:
            rows.append(_row(rng, i))
    return rows


def main() -> None:
    """Write the file named on the command line (or the default)."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/lapidar-data-100k.jsonl")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    out.write_text("".join(json.dumps(r) + "\n" for r in make_rows(n)), encoding="utf-8")
    print(f"wrote {n} rows -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
