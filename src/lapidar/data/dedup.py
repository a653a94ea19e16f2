"""Exact and near-duplicate detection: normalised keys for exact matches, MinHash + LSH for near ones.

Near-duplicates are measured by the Jaccard similarity of character 5-gram sets (of lower-cased text with
whitespace collapsed). Character shingles rather than word n-grams because training rows are often short: one
changed word in a 12-word question destroys most word trigrams but only a few character 5-grams.

Each shingle is hashed once: a polynomial hash of its 5 code points, scrambled by the murmur3 64-bit finaliser
(fmix64) so that every output bit depends on every input bit. The signature is one-permutation MinHash with
optimal densification (Li, Owen & Zhang 2012; Shrivastava 2017): the hash's top bits pick one of 120 bins, a
bin keeps the smallest hash that falls in it, and an empty bin borrows the value of the first non-empty bin along
its own fixed random probe order. Two sets then agree in a bin with probability exactly their Jaccard similarity,
as with 120 independent hash functions, but each shingle costs one hash instead of 120. (The affine hashes
(a*x + b) mod 2^61-1 used before barely wrapped around on 32-bit inputs, so their minima were mostly the same
shingle for every function and the estimate swung widely: pairs 93% similar scored as low as 8%, and 13 of 150
seeded pairs at >= 85% were missed.)

LSH banding (20 bands x 6 rows) finds candidate pairs without comparing every pair: a pair of similarity s shares
a band with probability 1 - (1 - s^6)^20, which is 99.8% at s = 0.8 (the default threshold) and 99.99% at 0.85.
Each candidate is then verified with the exact Jaccard of its shingle sets, so the reported pairs are exact, not
estimates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["NearPair", "UnionFind", "minhash_signatures", "near_duplicate_pairs", "normalise", "shingle_sets"]

_SHINGLE = 5
_BINS = 120
_BANDS, _ROWS = 20, 6
_rng = np.random.default_rng(20240601)  # fixed: the same data always gives the same pairs
_SEED = np.uint64(_rng.integers(0, 1 << 63))  # xor-ed into each shingle's polynomial hash before fmix64
# [bin, attempt]: the bins an empty bin borrows from, in order; a permutation of all bins, so a probe always ends.
_PROBES = np.argsort(_rng.random((_BINS, _BINS)), axis=1)
_EMPTY = np.uint64(np.iinfo(np.uint64).max)  # an empty bin (shingle hashes are 32-bit)
# Work sizes that keep each numpy step's arrays at a few tens of MB: characters per shingling step, and shingles
# binned in one step.
_CHARS_PER_STEP = 1 << 22
_SHINGLES_PER_STEP = 1 << 22


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


def _fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place on a uint64 array (numpy's uint64 multiply wraps mod 2^64)."""
    for shift, multiplier in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, None)):
        h ^= h >> np.uint64(shift)
        if multiplier is not None:
            h *= np.uint64(multiplier)
    return h


def shingle_sets(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The character 5-gram sets of `normalise(text)` for many texts (the whole text if shorter than 5), as
    `(values, offsets)`: text i's set is `values[offsets[i]:offsets[i + 1]]`, sorted unique 32-bit hashes.

    All texts of a step are hashed as one array: windows are hashed over the concatenated characters and those that
    cross a boundary between texts are dropped."""
    return _shingle_sets([normalise(t) for t in texts])


def _window_hashes(normalised: list[str]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """The 32-bit hash of every 5-character window of each text, a step of texts at a time: `(lo, hi, hashes,
    windows per text)` for texts `lo..hi`, their windows in text order (repeats included)."""
    # Short texts are padded with code 0 to one full window (U+0000 is the code the padding has always used).
    keys = [k if len(k) >= _SHINGLE else k + "\0" * (_SHINGLE - len(k)) for k in normalised]
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    for lo, hi in _chunks(lengths, _CHARS_PER_STEP):
        raw = "".join(keys[lo:hi]).encode("utf-32-le", "surrogatepass")
        codes = np.frombuffer(raw, dtype=np.uint32).astype(np.uint64)
        # Polynomial hash of each window in wrapping uint64 arithmetic, scrambled by fmix64; the top 32 bits kept.
        n_windows = len(codes) - _SHINGLE + 1
        h = np.zeros(n_windows, dtype=np.uint64)
        for k in range(_SHINGLE):
            h *= np.uint64(1_000_003)
            h += codes[k : n_windows + k]
        per_text = lengths[lo:hi] - _SHINGLE + 1
        starts = np.cumsum(lengths[lo:hi]) - lengths[lo:hi]
        h = h[_ranges(starts, per_text)]  # drop the windows that cross a boundary between texts
        h ^= _SEED
        yield lo, hi, _fmix64(h) >> np.uint64(32), per_text


def _shingle_sets(normalised: list[str]) -> tuple[np.ndarray, np.ndarray]:
    values, counts = [], []
    for lo, hi, h, per_text in _window_hashes(normalised):
        text_id = np.repeat(np.arange(hi - lo, dtype=np.uint64), per_text)
        # One sort gives every text its sorted unique set: text id in the high bits, hash in the low ones.
        keyed = _distinct((text_id << np.uint64(32)) | h)
        values.append((keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        counts.append(np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=hi - lo))
    offsets = np.zeros(len(normalised) + 1, dtype=np.int64)
    if normalised:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    return (np.concatenate(values) if values else np.zeros(0, dtype=np.uint32)), offsets


def _signatures(normalised: list[str]) -> np.ndarray:
    """`minhash_signatures(*_shingle_sets(normalised))` without building the sets: the smallest hash per (text,
    bin) is taken straight from every window's hash (a repeated shingle cannot change a minimum). The sort that
    makes the sets took most of the near-duplicate search's time; `np.minimum.at` is about 50 times cheaper."""
    sig = np.full((len(normalised), _BINS), _EMPTY, dtype=np.uint64)
    flat = sig.reshape(-1)
    for lo, hi, h, per_text in _window_hashes(normalised):
        cell = np.repeat(np.arange(lo * _BINS, hi * _BINS, _BINS, dtype=np.int64), per_text) + _bin(h)
        np.minimum.at(flat, cell, h)
    return _densify(sig).astype(np.uint32)


def _bin(values: np.ndarray) -> np.ndarray:
    """The bin (0..119) of 32-bit hashes: `value * 120 // 2^32`, which grows with the value."""
    return (values.astype(np.int64) * _BINS) >> 32


def minhash_signatures(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MinHash signatures [texts, 120] uint32 of shingle sets in `shingle_sets` form (each set sorted): entry j is
    the smallest hash of the set in bin j, or, when the bin is empty, that of the first non-empty bin in
    `_PROBES[j]`'s order (an empty set, which `shingle_sets` never gives, is all 0xFFFFFFFF).

    A set is sorted and the bin grows with the hash, so the smallest hash of a bin is the first one in it."""
    sizes = np.diff(offsets)
    sig = np.full((len(sizes), _BINS), _EMPTY, dtype=np.uint64)
    flat = sig.reshape(-1)
    for lo, hi in _chunks(sizes, _SHINGLES_PER_STEP):
        chunk = values[offsets[lo] : offsets[hi]]
        cell = np.repeat(np.arange(lo * _BINS, hi * _BINS, _BINS, dtype=np.int64), sizes[lo:hi]) + _bin(chunk)
        first = _starts_run(cell)
        flat[cell[first]] = chunk[first]
    return _densify(sig).astype(np.uint32)  # half the bytes for LSH and the agreement count


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin j with the value of the first bin in `_PROBES[j]` that the set has a shingle in.

    Two sets with bin j empty probe the same bins in the same order, so they agree there exactly when they agree
    in the first bin where either has a shingle: the chance is their Jaccard similarity, as for a non-empty bin
    (Shrivastava 2017, "Optimal densification for fast and accurate minwise hashing")."""
    out = sig.copy()
    rows = np.flatnonzero((sig == _EMPTY).any(axis=1))  # mostly short texts: fewer shingles than bins
    for attempt in range(_BINS):
        if not len(rows):
            break
        block = out[rows]
        source = sig[rows][:, _PROBES[:, attempt]]  # [rows, bins]: each bin's attempt-th probe, undensified
        fill = (block == _EMPTY) & (source != _EMPTY)
        block[fill] = source[fill]
        out[rows] = block
        rows = rows[(block == _EMPTY).any(axis=1)]
    return out


def _candidates(sig: np.ndarray, max_bucket: int) -> np.ndarray:
    """Pairs `(a, b)`, a < b, of rows that share an LSH bucket (all `_ROWS` values of one band), [pairs, 2] int64.

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
    sig = _signatures([keys[i] for i in reps])
    candidates = _candidates(sig, max_bucket)
    # The MinHash estimate (sd at most 0.037 at similarity >= 0.8 and 120 bins) discards clear misses before the
    # exact check; a pair at the threshold falls 0.15 below it with a chance of about 2e-5 (4 sd).
    agree = [
        np.count_nonzero(np.take(sig, chunk[:, 0], axis=0) == np.take(sig, chunk[:, 1], axis=0), axis=1)
        for chunk in np.array_split(candidates, max(1, len(candidates) // 16384))
    ]
    likely = candidates[np.concatenate(agree) >= (threshold - 0.15) * _BINS]
    # The exact sets, only for the texts of likely pairs (a few percent of them on real data).
    needed = _distinct(likely.reshape(-1))
    values, offsets = _shingle_sets([keys[reps[i]] for i in needed.tolist()])
    for a, b in np.searchsorted(needed, likely).tolist():
        sa, sb = values[offsets[a] : offsets[a + 1]], values[offsets[b] : offsets[b + 1]]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        sim = inter / (len(sa) + len(sb) - inter)
        if sim >= threshold:
            pairs.append(NearPair(reps[needed[a]], reps[needed[b]], round(sim, 3)))
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
