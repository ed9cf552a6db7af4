import numpy as np
import pytest

from retrieval.fusion import (
    Calibration,
    Moments,
    Span,
    bm25_scale,
    merge_adjacent,
    rrf_fusion,
    weighted_fusion,
)
from retrieval.hits import mmss


def test_calibration_standardises_against_background():
    q = np.array([1.0, 0.0])
    cal = Calibration.from_moments(Moments.of(np.array([[0.1, 5.0], [0.2, -1.0], [0.3, 2.0]])), q)
    assert cal(0.2) == pytest.approx(0.0)
    assert cal(0.3) > 1.0
    assert Calibration.from_moments(Moments.of(np.zeros((0, 2))), q).std == 1.0
    assert Calibration.from_moments(Moments.of(np.ones((4, 2))), q).std == 1e-3  # floored
    assert Calibration.from_moments(Moments.of(np.ones((4, 2))), q, floor=0.0).std == 0.0


def test_weighted_fusion_missing_counts_as_average():
    nan = np.nan  # candidates a, b: a has no visual score
    fused = weighted_fusion({"text": np.array([2.0, 1.0]), "visual": np.array([nan, 3.0])}, {"text": 1.0, "visual": 1.0})
    assert list(fused) == [1.0, 2.0]
    assert list(weighted_fusion({"text": np.array([1.0])}, {"text": 0.0})) == [0.0]


def test_rrf_fusion_rewards_agreement():
    # candidates a, b, c; text ranks a > b > c, visual ranks b > c > a
    fused = rrf_fusion({"text": np.array([3.0, 2.0, 1.0]), "visual": np.array([1.0, 3.0, 2.0])}, {"text": 1.0, "visual": 1.0}, k=60)
    assert int(np.argmax(fused)) == 1
    assert fused[0] == pytest.approx(1 / 61 + 1 / 63)
    partial = rrf_fusion({"text": np.array([np.nan, 1.0])}, {"text": 1.0}, k=60)
    assert list(partial) == pytest.approx([0.0, 1 / 61])  # no score, no share


def test_bm25_scale():
    assert list(bm25_scale(np.array([4.0, 1.0, np.nan]), z=3.0)[:2]) == [3.0, 0.75]
    assert np.isnan(bm25_scale(np.array([4.0, 1.0, np.nan]), z=3.0)[2])
    assert np.isnan(bm25_scale(np.array([np.nan, np.nan]), z=3.0)).all()


def test_merge_adjacent_groups_neighbours_that_rank_high():
    ranked = [Span("v:2", "v", 2, 1.0), Span("v:3", "v", 3, 0.9), Span("w:3", "w", 3, 0.85), Span("v:5", "v", 5, 0.8), Span("v:1", "v", 1, 0.3)]
    groups = merge_adjacent(ranked, keep=0.8)
    assert [[s.item for s in g] for g in groups] == [["v:2", "v:3"], ["w:3"], ["v:5"], ["v:1"]]


def test_mmss():
    assert mmss(0) == "00:00" and mmss(75.4) == "01:15" and mmss(3725) == "1:02:05"


def test_moments_give_the_same_calibration_as_scoring_the_sample():
    rng = np.random.default_rng(3)
    sample = rng.standard_normal((500, 24)).astype(np.float32) + 0.3
    q = rng.standard_normal(24).astype(np.float32)
    sims = sample.astype(np.float64) @ q
    got = Calibration.from_moments(Moments.of(sample), q)
    assert got.mean == pytest.approx(sims.mean(), rel=1e-5) and got.std == pytest.approx(sims.std(), rel=1e-5)
    assert Calibration.from_moments(Moments.of(np.zeros((0, 24))), q) == Calibration(0.0, 1.0)
