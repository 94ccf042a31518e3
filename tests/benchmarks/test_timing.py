# SPDX-License-Identifier: Apache-2.0
"""Interleaved measurement and the spread every report row keeps."""

import pytest
import torch

from lcengine.benchmarks import Timer, measure, measure_stats, summarize


def test_summarize_quartiles_and_range():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.reps) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    assert s.iqr_rel == pytest.approx(2.0 / 3.0)
    assert s.as_ms() == pytest.approx(
        {"q1_ms": 2e3, "q3_ms": 4e3, "min_ms": 1e3, "max_ms": 5e3, "reps": 5, "iqr_rel": 2.0 / 3.0}
    )
    one = summarize([2.0])
    assert (one.q1, one.q3, one.iqr_rel) == (2.0, 2.0, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_contenders_are_timed_in_alternating_blocks_after_warmup():
    calls = []
    contenders = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    stats = measure_stats(contenders, Timer(torch.device("cpu")), warmup=2, reps=7)
    # warm-up; then 3 rounds of blocks (3, 2, 2 timed calls), each after one untimed call
    rounds = [["a"] * (1 + n) + ["b"] * (1 + n) for n in (3, 2, 2)]
    assert calls == ["a", "a", "b", "b"] + [c for r in rounds for c in r]
    assert {k: s.reps for k, s in stats.items()} == {"a": 7, "b": 7}
    calls.clear()
    measure_stats({"a": contenders["a"]}, Timer(torch.device("cpu")), warmup=0, reps=2)
    assert calls == ["a", "a"]  # one contender: no untimed call between blocks
    medians = measure(contenders, Timer(torch.device("cpu")), warmup=0, reps=1)
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())
