import numpy as np
import pytest

from retrieval.fusion import Calibration, Span, bm25_scale, merge_adjacent, rrf_fusion, weighted_fusion, zscores
from retrieval.hits import mmss


def test_calibration_standardises_against_background():
    cal = Calibration.from_background(np.array([0.1, 0.2, 0.3]))
    assert cal(0.2) == pytest.approx(0.0)
    assert cal(0.3) > 1.0
    assert Calibration.from_background(np.array([])).std == 1.0


def test_zscores_degenerate_cases():
    assert zscores({"a": 1.0}) == {"a": 0.0}
    assert zscores({"a": 1.0, "b": 1.0}) == {"a": 0.0, "b": 0.0}
    z = zscores({"a": 1.0, "b": 3.0})
    assert z["b"] == pytest.approx(1.0) and z["a"] == pytest.approx(-1.0)


def test_weighted_fusion_missing_counts_as_average():
    fused = weighted_fusion({"text": {"a": 2.0, "b": 1.0}, "visual": {"b": 3.0}}, {"text": 1.0, "visual": 1.0})
    assert fused == {"a": 1.0, "b": 2.0}
    assert weighted_fusion({"text": {"a": 1.0}}, {"text": 0.0}) == {}


def test_rrf_fusion_rewards_agreement():
    fused = rrf_fusion({"text": ["a", "b", "c"], "visual": ["b", "c", "a"]}, {"text": 1.0, "visual": 1.0}, k=60)
    assert max(fused, key=fused.get) == "b"
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)


def test_bm25_scale():
    assert bm25_scale({"a": 4.0, "b": 1.0}) == {"a": 1.0, "b": 0.25}
    assert bm25_scale({}) == {}


def test_merge_adjacent_groups_neighbours_that_rank_high():
    ranked = [Span("v:2", "v", 2, 1.0), Span("v:3", "v", 3, 0.9), Span("w:3", "w", 3, 0.85), Span("v:5", "v", 5, 0.8), Span("v:1", "v", 1, 0.3)]
    groups = merge_adjacent(ranked, keep=0.8)
    assert [[s.item for s in g] for g in groups] == [["v:2", "v:3"], ["w:3"], ["v:5"], ["v:1"]]


def test_mmss():
    assert mmss(0) == "00:00" and mmss(75.4) == "01:15" and mmss(3725) == "1:02:05"
