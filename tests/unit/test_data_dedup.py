"""Near-duplicate detection computed for all texts at once gives what the definitions give text by text."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lapidar.data import dedup
from lapidar.data.dedup import minhash_signatures, near_duplicate_pairs, normalise, shingle_sets

# Short, empty, whitespace-only, non-Latin and astral-plane texts, next to ordinary ones.
TEXTS = ["", "ab", "abcd", "  a\tb ", "abcde", "Olá, mundo!", "日本語のテキストです", "emoji 🙂🙂 here", "x" * 40]


def one_set(text: str) -> list[int]:
    """The character 5-gram hashes of one text, straight from the definition, in Python integers."""
    codes = [ord(c) for c in normalise(text)]
    codes += [0] * (5 - len(codes))
    found = set()
    for i in range(len(codes) - 4):
        h = 0
        for c in codes[i : i + 5]:
            h = (h * 1_000_003 + c) % 2**64
        found.add((h ^ (h >> 32)) & 0xFFFFFFFF)
    return sorted(found)


def test_shingle_sets_match_the_definition():
    values, offsets = shingle_sets(TEXTS)
    assert len(offsets) == len(TEXTS) + 1
    for i, text in enumerate(TEXTS):
        assert values[offsets[i] : offsets[i + 1]].tolist() == one_set(text), text


def test_minhash_signatures_match_the_definition():
    values, offsets = shingle_sets(TEXTS)
    sig = minhash_signatures(values, offsets)
    p = (1 << 61) - 1
    for i, text in enumerate(TEXTS):
        expected = [
            min((int(a) * x + int(b)) % p for x in one_set(text)) for a, b in zip(dedup._A, dedup._B, strict=True)
        ]
        assert sig[i].tolist() == expected, text


def seeded_texts(vocabulary: int, n: int = 400) -> list[str]:
    """Sentences of made-up words, a tenth of them copied from an earlier row with one or two words changed. With a
    small vocabulary unrelated rows share many 5-grams too, which fills LSH buckets past `max_bucket`."""
    rng = random.Random(vocabulary)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(vocabulary)
    ]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.1:
            copy = rng.choice(texts).split()
            for _ in range(rng.randint(1, 2)):
                copy[rng.randrange(len(copy))] = rng.choice(words)
            texts.append(" ".join(copy))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(12, 40))))
    return texts


def one_at_a_time(texts: list[str], threshold: float, max_bucket: int = 50) -> list[tuple[int, int, float]]:
    """The search as it was written before it was vectorised: text by text, bucket by bucket, pair by pair."""
    keys = [normalise(t) for t in texts]
    first: dict[str, int] = {}
    reps = [i for i, k in enumerate(keys) if first.setdefault(k, i) == i]
    pairs = [(first[k], i, 1.0) for i, k in enumerate(keys) if first[k] != i]
    sets = {i: np.array(one_set(texts[i]), dtype=np.uint64) for i in reps}
    sig = {i: ((np.outer(dedup._A, sets[i]) + dedup._B[:, None]) % dedup._PRIME).min(axis=1) for i in reps}
    buckets: dict[tuple, list[int]] = {}
    for i in reps:
        for band in range(20):
            buckets.setdefault((band, *sig[i][band * 6 : band * 6 + 6].tolist()), []).append(i)
    seen = set()
    for members in buckets.values():
        for j, b in enumerate(members[1:], start=1):
            for a in members[: min(j, max_bucket)]:
                if (a, b) in seen or np.count_nonzero(sig[a] == sig[b]) < (threshold - 0.15) * 120:
                    continue
                seen.add((a, b))
                sa, sb = set(sets[a].tolist()), set(sets[b].tolist())
                if len(sa & sb) / len(sa | sb) >= threshold:
                    pairs.append((a, b, round(len(sa & sb) / len(sa | sb), 3)))
    return sorted(set(pairs), key=lambda p: (p[1], p[0]))


@pytest.mark.parametrize(("vocabulary", "max_bucket"), [(13, 50), (13, 3), (500, 50)])
def test_near_duplicate_pairs_as_found_one_at_a_time(vocabulary, max_bucket):
    texts = seeded_texts(vocabulary)
    found = [(p.a, p.b, p.similarity) for p in near_duplicate_pairs(texts, 0.8, max_bucket)]
    assert found == one_at_a_time(texts, 0.8, max_bucket)
    assert len(found) >= 20  # the example has real work in it
    sets = [set(one_set(t)) for t in texts]
    for a, b, similarity in found:
        assert similarity == round(len(sets[a] & sets[b]) / len(sets[a] | sets[b]), 3) >= 0.8


@pytest.mark.parametrize("max_bucket", [2, 50])
def test_lsh_candidates_are_every_pair_sharing_a_band(max_bucket):
    # Signatures of few distinct values put rows in many shared buckets, some larger than max_bucket.
    sig = np.random.default_rng(3).integers(0, 2, size=(300, 120), dtype=np.uint64)
    expected = set()
    for band in range(20):
        buckets: dict[tuple, list[int]] = {}
        for i in range(len(sig)):
            buckets.setdefault(tuple(sig[i, band * 6 : band * 6 + 6].tolist()), []).append(i)
        for members in buckets.values():
            expected |= {(a, b) for j, b in enumerate(members) for a in members[: min(j, max_bucket)]}
    assert {(a, b) for a, b in dedup._candidates(sig, max_bucket).tolist()} == expected


def test_no_texts():
    values, offsets = shingle_sets([])
    assert len(values) == 0 and offsets.tolist() == [0]
    assert minhash_signatures(values, offsets).shape == (0, 120)
    assert near_duplicate_pairs([]) == []
