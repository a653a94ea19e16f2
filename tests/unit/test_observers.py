"""Early stopping and LR schedules."""

from __future__ import annotations

import pytest

from lapidar.training.observers import EarlyStopping
from lapidar.training.schedule import lr_factor


def test_early_stopping_fires_after_patience():
    es = EarlyStopping(patience=2)
    assert es.update(0, 5.0) and not es.should_stop
    assert es.update(10, 4.0)
    assert not es.update(20, 4.1) and not es.should_stop
    assert not es.update(30, 4.0) and es.should_stop
    assert es.best == 4.0 and es.best_step == 10


def test_min_delta_and_disabled():
    es = EarlyStopping(patience=1, min_delta=0.5)
    es.update(0, 5.0)
    assert not es.update(1, 4.7) and es.should_stop
    off = EarlyStopping(patience=None)
    for step in range(10):
        off.update(step, 1.0 + step)
    assert not off.should_stop


def test_schedules():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "linear") == pytest.approx(0.0)
    assert lr_factor(70, 100, 0, "constant") == 1.0
