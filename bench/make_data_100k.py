"""Write a deterministic 100,000-row chat file for timing `lapidar data check` (bench/data_check_speed.py).

    python bench/make_data_100k.py [OUT.jsonl] [ROWS]            # default /tmp/lapidar-data-100k.jsonl, 100000 rows
    python bench/make_data_100k.py --varied [OUT.jsonl] [ROWS]   # alpaca rows from a 6,000-word vocabulary

Rows are messages-format conversations built from a fixed vocabulary (one or two turns, some with a system
prompt), with about 2% exact duplicates and 3% near-duplicates (one word changed) seeded in, so every check,
near-duplicate search included, has real work to do. The same arguments always give the same bytes.

The 70-word vocabulary makes every row share many 5-character shingles with every other, a worst case for the
near-duplicate search (2.8 million candidate pairs). `--varied` writes alpaca rows (instruction, input?, output) of
20-120 words drawn with Zipf frequencies from 6,000 made-up words, closer to real text, with the same duplicates.
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


def _varied_words(rng: random.Random, n: int = 6000) -> tuple[list[str], list[float]]:
    """Made-up words of 2-11 letters and their Zipf weights (the i-th most common word ~ 1/i)."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = {"".join(rng.choice(letters[: rng.randint(8, 26)]) for _ in range(rng.randint(2, 11))) for _ in range(n)}
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered, [1 / (i + 1) for i in range(len(ordered))]


def _varied_row(rng: random.Random, vocab: tuple[list[str], list[float]]) -> dict:
    def text(lo: int, hi: int) -> str:
        words = rng.choices(vocab[0], vocab[1], k=rng.randint(lo, hi))
        return " ".join(words).capitalize() + "."

    row = {"instruction": text(8, 40), "output": text(12, 80)}
    if rng.random() < 0.3:
        row["input"] = text(5, 20)
    return row


def _near(rng: random.Random, row: dict) -> dict:
    """The same conversation with one word of the last answer changed."""
    if "output" in row:
        words = row["output"].split()
        words[rng.randrange(len(words))] = rng.choice(WORDS)
        return {**row, "output": " ".join(words)}
    messages = [dict(m) for m in row["messages"]]
    words = messages[-1]["content"].split()
    words[rng.randrange(len(words))] = rng.choice(WORDS)
    messages[-1]["content"] = " ".join(words)
    return {"messages": messages}


def make_rows(n: int, seed: int = 0, varied: bool = False) -> list[dict]:
    """`n` rows: ~95% distinct, ~2% exact copies and ~3% near copies of earlier rows."""
    rng = random.Random(seed)
    vocab = _varied_words(random.Random(seed + 1)) if varied else None
    rows: list[dict] = []
    for i in range(n):
        r = rng.random()
        if rows and r < 0.02:
            rows.append(rows[rng.randrange(len(rows))])
        elif rows and r < 0.05:
            rows.append(_near(rng, rows[rng.randrange(len(rows))]))
        else:
            rows.append(_varied_row(rng, vocab) if vocab else _row(rng, i))
    return rows


def main() -> None:
    """Write the file named on the command line (or the default)."""
    varied = "--varied" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--varied"]
    default = "/tmp/lapidar-data-100k-varied.jsonl" if varied else "/tmp/lapidar-data-100k.jsonl"
    out = Path(args[0]) if args else Path(default)
    n = int(args[1]) if len(args) > 1 else 100_000
    out.write_text("".join(json.dumps(r) + "\n" for r in make_rows(n, varied=varied)), encoding="utf-8")
    print(f"wrote {n} rows -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
