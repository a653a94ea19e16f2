"""Near-duplicate detection computed for all texts at once gives what the definitions give text by text."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lapidar.data import dedup
from lapidar.data.dedup import minhash_signatures, near_duplicate_pairs, normalise, shingle_sets

# Short, empty, whitespace-only, non-Latin and astral-plane texts, next to ordinary ones.
TEXTS = ["", "ab", "abcd", "  a\tb ", "abcde", "Olá, mundo!", "日本語のテキストです", "emoji 🙂🙂 here", "x" * 40]


def fmix64(h: int) -> int:
    """murmur3's 64-bit finaliser, in Python integers."""
    h ^= h >> 33
    h = h * 0xFF51AFD7ED558CCD % 2**64
    h ^= h >> 33
    h = h * 0xC4CEB9FE1A85EC53 % 2**64
    return h ^ (h >> 33)


def one_set(text: str) -> list[int]:
    """The character 5-gram hashes of one text, straight from the definition, in Python integers."""
    codes = [ord(c) for c in normalise(text)]
    codes += [0] * (5 - len(codes))
    found = set()
    for i in range(len(codes) - 4):
        h = 0
        for c in codes[i : i + 5]:
            h = (h * 1_000_003 + c) % 2**64
        found.add(fmix64(h ^ int(dedup._SEED)) >> 32)
    return sorted(found)


def one_signature(hashes: list[int]) -> list[int]:
    """One-permutation MinHash of one set with optimal densification, bin by bin."""
    bins: dict[int, int] = {}
    for x in hashes:
        j = x * 120 // 2**32
        bins[j] = min(bins.get(j, x), x)
    return [next(bins[k] for k in [j, *dedup._PROBES[j].tolist()] if k in bins) for j in range(120)]


def jaccard(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def test_shingle_sets_match_the_definition():
    values, offsets = shingle_sets(TEXTS)
    assert len(offsets) == len(TEXTS) + 1
    for i, text in enumerate(TEXTS):
        assert values[offsets[i] : offsets[i + 1]].tolist() == one_set(text), text


def test_minhash_signatures_match_the_definition():
    values, offsets = shingle_sets(TEXTS)
    sig = minhash_signatures(values, offsets)
    for i, text in enumerate(TEXTS):
        assert sig[i].tolist() == one_signature(one_set(text)), text


def random_words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(n)]


def edited_pairs(edits: int, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """`n` pairs of 80-word texts, the second a copy of the first with `edits` words replaced."""
    out = []
    for _ in range(n):
        words = random_words(rng, 80)
        copy = list(words)
        for i, word in zip(rng.sample(range(80), edits), random_words(rng, edits), strict=True):
            copy[i] = word
        out.append((" ".join(words), " ".join(copy)))
    return out


@pytest.mark.parametrize("edits", [1, 2, 4, 12])  # Jaccard about 0.97, 0.93, 0.87 and 0.65
def test_signatures_estimate_jaccard_without_bias(edits):
    # The share of equal entries is Binomial(120, J) / 120, sd <= 0.046: 0.2 is over 4 sd for each of the 30 pairs,
    # and the mean of 30 is within 0.03 (3.5 sd). The affine hashes used before, (a*x + b) mod 2^61-1, were off
    # by up to 0.85 on such pairs (their 120 minima were mostly the same shingle).
    pairs = edited_pairs(edits, 30, random.Random(edits))
    values, offsets = shingle_sets([t for pair in pairs for t in pair])
    sig = minhash_signatures(values, offsets)
    sets = [values[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    true = np.array([jaccard(sets[2 * k], sets[2 * k + 1]) for k in range(len(pairs))])
    estimate = np.array([np.mean(sig[2 * k] == sig[2 * k + 1]) for k in range(len(pairs))])
    assert np.abs(estimate - true).max() < 0.2
    assert abs(estimate.mean() - true.mean()) < 0.03


def seeded_texts(vocabulary: int, n: int = 400) -> list[str]:
    """Sentences of made-up words, a tenth of them copied from an earlier row with one or two words changed. With a
    small vocabulary unrelated rows share many 5-grams too, which fills LSH buckets past `max_bucket`."""
    rng = random.Random(vocabulary)
    words = random_words(rng, vocabulary)
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


def all_pairs(texts: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """Every pair at or above `threshold`, by the exact Jaccard of every pair of shingle sets."""
    sets = [set(one_set(t)) for t in texts]
    return [
        (a, b, round(len(sets[a] & sets[b]) / len(sets[a] | sets[b]), 3))
        for b in range(len(texts))
        for a in range(b)
        if len(sets[a] & sets[b]) >= threshold * len(sets[a] | sets[b])
    ]


@pytest.mark.parametrize(("vocabulary", "max_bucket"), [(13, 50), (13, 3), (500, 50)])
def test_near_duplicate_pairs_are_exact(vocabulary, max_bucket):
    texts = seeded_texts(vocabulary)
    found = [(p.a, p.b, p.similarity) for p in near_duplicate_pairs(texts, 0.8, max_bucket)]
    truth = all_pairs(texts, 0.8)
    assert len(found) >= 20  # the example has real work in it
    if max_bucket == 50:
        assert found == truth  # every pair found, none made up
    else:  # a capped bucket skips some pairs, never reports a wrong one
        assert set(found) <= set(truth)


def test_every_near_duplicate_above_085_is_found():
    # 1 - (1 - s^6)^20 >= 0.9999 at s >= 0.85: all 150 seeded pairs must be found among 900 texts.
    rng = random.Random(7)
    pairs = [p for edits in (1, 2, 3) for p in edited_pairs(edits, 50, rng)]
    texts = [t for pair in pairs for t in pair] + [" ".join(random_words(rng, 80)) for _ in range(600)]
    found = {(p.a, p.b) for p in near_duplicate_pairs(texts, 0.85)}
    seeded = [(2 * k, 2 * k + 1) for k in range(len(pairs))]
    sets = [one_set(t) for t in texts[: 2 * len(pairs)]]
    assert all(jaccard(sets[a], sets[b]) >= 0.85 for a, b in seeded)
    assert set(seeded) <= found


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
