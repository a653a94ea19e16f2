"""Exact and near-duplicate detection: normalised keys for exact matches, MinHash + LSH for near ones.

Near-duplicates are measured by the Jaccard similarity of character 5-gram sets (of lower-cased text with
whitespace collapsed). Character shingles rather than word n-grams because training rows are often short: one
changed word in a 12-word question destroys most word trigrams but only a few character 5-grams.
MinHash (Broder 1997) estimates Jaccard from 120 hash minima; LSH banding (20 bands x 6 rows, so pairs above about
0.6 similarity become candidates) finds candidate pairs without comparing every pair, and each candidate is then
verified with the exact Jaccard of its shingle sets, so the reported pairs are exact, not estimates.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

__all__ = ["NearPair", "UnionFind", "minhash_signatures", "near_duplicate_pairs", "normalise", "shingle_sets"]

_SHINGLE = 5
_BANDS, _ROWS = 20, 6
_PRIME = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20240601)  # fixed: the same data always gives the same pairs
_A = _rng.integers(1, 1 << 31, size=_BANDS * _ROWS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 31, size=_BANDS * _ROWS, dtype=np.uint64)
# Work sizes that keep each numpy step's arrays at a few tens of MB: characters per shingling step, shingles whose
# hashes are computed in one step, and [docs, shingles, 120] cells gathered in one minimum.
_CHARS_PER_STEP = 1 << 22
_SHINGLES_PER_STEP = 1 << 18
_CELLS_PER_STEP = 1 << 15


def normalise(text: str) -> str:
    """Lower-case with whitespace collapsed: the text near-duplicate detection compares."""
    return " ".join(text.split()).lower()  # str.split() splits at exactly regex \s's characters


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])` without a Python loop."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)


def _chunks(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive `(start, stop)` runs of items whose sizes add up to at most `budget` (one item at the least)."""
    ends = np.cumsum(sizes)
    out, start = [], 0
    while start < len(sizes):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + budget, side="right")))
        out.append((start, stop))
        start = stop
    return out


def _starts_run(ordered: np.ndarray) -> np.ndarray:
    """True where a sorted array's value differs from the one before it (and at the first position)."""
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    return new


def _distinct(x: np.ndarray) -> np.ndarray:
    """`np.unique(x)` by one sort (numpy 2's hash-based unique is several times slower on these sizes)."""
    ordered = np.sort(x)
    return ordered[_starts_run(ordered)]


def _distinct_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(x, return_inverse=True)` by one sort."""
    order = np.argsort(x)
    ordered = x[order]
    new = _starts_run(ordered)
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def shingle_sets(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The character 5-gram sets of `normalise(text)` for many texts (the whole text if shorter than 5), as
    `(values, offsets)`: text i's set is `values[offsets[i]:offsets[i + 1]]`, sorted unique 32-bit hashes.

    All texts of a step are hashed as one array: windows are hashed over the concatenated characters and those that
    cross a boundary between texts are dropped."""
    return _shingle_sets([normalise(t) for t in texts])


def _shingle_sets(normalised: list[str]) -> tuple[np.ndarray, np.ndarray]:
    # Short texts are padded with code 0 to one full window (U+0000 is the code the padding has always used).
    keys = [k if len(k) >= _SHINGLE else k + "\0" * (_SHINGLE - len(k)) for k in normalised]
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    values, counts = [], []
    for lo, hi in _chunks(lengths, _CHARS_PER_STEP):
        raw = "".join(keys[lo:hi]).encode("utf-32-le", "surrogatepass")
        codes = np.frombuffer(raw, dtype=np.uint32).astype(np.uint64)
        # Polynomial rolling hash of each window, in wrapping uint64 arithmetic; then fold to 32 bits.
        n_windows = len(codes) - _SHINGLE + 1
        h = np.zeros(n_windows, dtype=np.uint64)
        for k in range(_SHINGLE):
            h = h * np.uint64(1_000_003) + codes[k : n_windows + k]
        h = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
        per_text = lengths[lo:hi] - _SHINGLE + 1
        starts = np.cumsum(lengths[lo:hi]) - lengths[lo:hi]
        text_id = np.repeat(np.arange(hi - lo, dtype=np.uint64), per_text)
        # One sort gives every text its sorted unique set: text id in the high bits, hash in the low ones.
        keyed = _distinct((text_id << np.uint64(32)) | h[_ranges(starts, per_text)])
        values.append((keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        counts.append(np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=hi - lo))
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    if keys:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    return (np.concatenate(values) if values else np.zeros(0, dtype=np.uint32)), offsets


def _hashes(x: np.ndarray) -> np.ndarray:
    """[len(x), 120]: (a*x + b) mod p for the 120 hash functions, p = 2^61 - 1."""
    # a < 2^31 and x < 2^32, so a*x + b < 2^63: no overflow. p is a Mersenne prime: v mod p = (v & p) + (v >> 61),
    # less p once more when that reaches p (the wrapped difference is huge otherwise, so `minimum` picks right).
    v = x.astype(np.uint64)[:, None] * _A + _B
    v = (v & _PRIME) + (v >> np.uint64(61))
    return np.minimum(v, v - _PRIME)


def minhash_signatures(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MinHash signatures [texts, 120] of shingle sets in `shingle_sets` form: per hash function, the minimum of
    (a*x + b) mod p over the set's shingles.

    Texts are taken in order of set size, so a step pads its sets to nearly equal lengths; each distinct shingle
    of a step is hashed once (rows share most of theirs), and each minimum is one gather and one reduction."""
    sizes = np.diff(offsets)
    order = np.argsort(sizes, kind="stable")
    out = np.empty((len(sizes), len(_A)), dtype=np.int64)
    for lo, hi in _chunks(sizes[order], _SHINGLES_PER_STEP):
        docs = order[lo:hi]
        unique, inverse = _distinct_inverse(values[_ranges(offsets[docs], sizes[docs])])
        # Hashes are below 2^61, so they compare the same as int64, which numpy gathers and reduces faster. The
        # last row is a pad that never wins a minimum.
        table = np.vstack([_hashes(unique).view(np.int64), np.full((1, len(_A)), np.iinfo(np.int64).max)])
        starts = np.cumsum(sizes[docs]) - sizes[docs]
        for a, b in _chunks(sizes[docs], _CELLS_PER_STEP):
            n = sizes[docs[b - 1]]  # the largest of these sets: they come in order of size
            index = np.full((b - a, n), len(unique), dtype=np.int64)
            filled = np.arange(n) < sizes[docs[a:b], None]
            index[filled] = inverse[_ranges(starts[a:b], sizes[docs[a:b]])]
            out[docs[a:b]] = np.take(table, index, axis=0).min(axis=1)
    return out.view(np.uint64)


def _candidates(sig: np.ndarray, max_bucket: int) -> np.ndarray:
    """Pairs `(a, b)`, a < b, of rows that share an LSH bucket (all 6 values of one band), [pairs, 2] int64.

    Inside a bucket, each member is paired with the ones before it, at most the first `max_bucket` of them."""
    n = len(sig)
    found = [np.zeros(0, dtype=np.int64)]
    for band in range(_BANDS):
        cols = sig[:, band * _ROWS : (band + 1) * _ROWS]
        order = np.lexsort(cols.T[::-1])  # stable: rows of one bucket stay in index order
        ordered = cols[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
        bucket_start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
        partners = np.minimum(np.arange(n) - bucket_start, max_bucket)  # members before this one to pair with
        later = np.repeat(order, partners)
        earlier = order[_ranges(bucket_start, partners)]
        found.append(_distinct(earlier * n + later))
    codes = _distinct(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1) if n else np.zeros((0, 2), dtype=np.int64)


@dataclass(frozen=True)
class NearPair:
    """Two texts (by index) whose shingle sets have Jaccard similarity >= the threshold."""

    a: int
    b: int
    similarity: float


def near_duplicate_pairs(texts: list[str], threshold: float = 0.8, max_bucket: int = 50) -> list[NearPair]:
    """All pairs `(a < b)` of near-duplicate texts. Texts equal after `normalise` pair with the first of them at
    similarity 1.0. Inside an LSH bucket larger than `max_bucket`, each text is only compared with the bucket's
    first ones, so a file of thousands of templated rows stays fast; the groups found stay connected."""
    keys = [normalise(t) for t in texts]
    first: dict[str, int] = {}
    reps = [i for i, k in enumerate(keys) if first.setdefault(k, i) == i]
    pairs = [NearPair(first[k], i, 1.0) for i, k in enumerate(keys) if first[k] != i]
    values, offsets = _shingle_sets([keys[i] for i in reps])
    sig = minhash_signatures(values, offsets)
    candidates = _candidates(sig, max_bucket)
    # The MinHash estimate (sd about 0.04 at 120 hashes) discards clear misses before the exact check.
    agree = [
        np.count_nonzero(np.take(sig, chunk[:, 0], axis=0) == np.take(sig, chunk[:, 1], axis=0), axis=1)
        for chunk in np.array_split(candidates, max(1, len(candidates) // 16384))
    ]
    likely = candidates[np.concatenate(agree) >= (threshold - 0.15) * len(_A)]
    for a, b in likely.tolist():
        sa, sb = values[offsets[a] : offsets[a + 1]], values[offsets[b] : offsets[b + 1]]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        sim = inter / (len(sa) + len(sb) - inter)
        if sim >= threshold:
            pairs.append(NearPair(reps[a], reps[b], round(sim, 3)))
    return sorted(pairs, key=lambda p: (p.b, p.a))


class UnionFind:
    """Disjoint sets over 0..n-1: rows joined by duplicate links end up in one group."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        """The group representative of `x` (the smallest index, so groups are stable)."""
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        """Put `a` and `b` in one group."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        """Every group as a sorted list of members, ordered by first member."""
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return sorted(out.values(), key=lambda g: g[0])
