"""A deterministic, leakage-free train/validation split.

Rows that would leak into each other are grouped first (union-find): exact duplicates, near-duplicates and — for
chat, preference and feedback rows — rows that share the same prompt. Whole groups are then drawn into validation
with a seeded shuffle until each stratum reaches its share; when the data has labels (feedback 👍/👎, or
classification-like answers) the strata are the labels, so both sides keep the label balance.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from lapidar.data.dedup import UnionFind, near_duplicate_pairs
from lapidar.data.formats import Dataset
from lapidar.data.quality import classification_labels, exact_key, label_of, near_text, prompt_key
from lapidar.errors import UserError

__all__ = ["SplitResult", "split"]


@dataclass
class SplitResult:
    """Row indices of each side (in file order), and what the split took into account."""

    train: list[int]
    val: list[int]
    groups_kept_together: int  # groups of 2+ rows that stayed on one side
    rows_in_groups: int
    stratified: bool
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> (train rows, validation rows)


def _groups(ds: Dataset, near: bool, threshold: float) -> list[list[int]]:
    examples = ds.examples
    uf = UnionFind(len(examples))
    keys: dict[str, int] = {}
    for i, ex in enumerate(examples):
        uf.union(keys.setdefault(exact_key(ex), i), i)
        if ex.kind != "text" and any(m["content"].strip() for m in ex.prompt() if m["role"] == "user"):
            uf.union(keys.setdefault("prompt:" + prompt_key(ex), i), i)
    if near:
        for p in near_duplicate_pairs([near_text(e) for e in examples], threshold):
            uf.union(p.a, p.b)
    return uf.groups()


def split(ds: Dataset, val_fraction: float, seed: int, *, near: bool = True, threshold: float = 0.8) -> SplitResult:
    """Split a dataset; the same data, fraction and seed always give the same split."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    groups = _groups(ds, near, threshold)
    labels = classification_labels(ds.examples)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for g in groups:
        strata[label_of(ds.examples[g[0]]) if labels else ""].append(g)
    rng = random.Random(seed)
    val: list[int] = []
    for name in sorted(strata):
        members = strata[name]
        target = round(val_fraction * sum(len(g) for g in members))
        order = list(range(len(members)))
        rng.shuffle(order)
        taken = 0
        for k in order:
            if taken + len(members[k]) <= target:
                val += members[k]
                taken += len(members[k])
    if not val:
        raise UserError(
            f"{ds.path}: cannot hold out {val_fraction:.0%} of {len(ds.examples)} rows: too few rows, or the "
            "duplicate groups are larger than the validation share; raise --val-fraction or add rows"
        )
    val_set = set(val)
    train = [i for i in range(len(ds.examples)) if i not in val_set]
    per_label: dict[str, tuple[int, int]] = {}
    if labels:  # counted per row: a group (rows sharing a prompt) may hold several labels
        for i, ex in enumerate(ds.examples):
            n_train, n_val = per_label.get(label_of(ex), (0, 0))
            per_label[label_of(ex)] = (n_train + (i not in val_set), n_val + (i in val_set))
        per_label = dict(sorted(per_label.items()))
    multi = [g for g in groups if len(g) > 1]
    return SplitResult(train, sorted(val), len(multi), sum(len(g) for g in multi), bool(labels), per_label)
