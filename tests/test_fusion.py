import numpy as np
import pytest

from egorag.stats import Moments
from egorag.times import mmss
from retrieval.fusion import (
    Calibration,
    Span,
    bm25_scale,
    merge_adjacent,
    rrf_fusion,
    weighted_fusion,
)


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


def ranking(shift: float = 0.0, scale: float = 1.0) -> list[Span]:
    """A query's ranked candidates: a few strong scenes over 60 background ones."""
    top = [("v:2", "v", 2, 4.0), ("v:3", "v", 3, 3.5), ("w:3", "w", 3, 3.4), ("v:5", "v", 5, 3.2)]
    background = [(f"b{i}:0", f"b{i}", 0, float(x)) for i, x in enumerate(np.random.default_rng(0).normal(0, 0.7, 60))]
    weak = [("v:1", "v", 1, 0.5), ("v:6", "v", 6, 0.4)]
    spans = [Span(i, k, n, shift + scale * x) for i, k, n, x in top + background + weak]
    return sorted(spans, key=lambda s: -s.score)


def test_merge_adjacent_groups_neighbours_that_rank_high():
    groups = [[s.item for s in g] for g in merge_adjacent(ranking(), keep=0.8)]
    assert groups[:3] == [["v:2", "v:3"], ["w:3"], ["v:5"]]
    assert ["v:1"] in groups  # next to the best group, but an average scene: not merged
    assert all(len(g) == 1 for g in groups if g[0].startswith("b"))


@pytest.mark.parametrize("shift, scale", [(-10.0, 1.0), (0.03, 0.001), (5.0, 40.0)])
def test_merge_adjacent_means_the_same_at_any_scale(shift, scale):
    """RRF's scores are compressed near each other and weighted fusion's may be negative: the
    merge rule reads standings, so an affine change of the scores changes no group."""
    want = [[s.item for s in g] for g in merge_adjacent(ranking(), keep=0.8)]
    assert [[s.item for s in g] for g in merge_adjacent(ranking(shift, scale), keep=0.8)] == want


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


def test_contributions_add_up_to_the_fused_score():
    from retrieval.fusion import rrf_contributions, weighted_contributions

    scores = {"text": np.array([2.0, -1.0, np.nan]), "visual": np.array([0.5, 1.5, 3.0]), "bm25": np.array([np.nan, 2.0, 1.0])}
    weights = {"text": 1.0, "visual": 0.5, "bm25": 0.3}
    parts = weighted_contributions(scores, weights)
    np.testing.assert_allclose(sum(parts.values()), weighted_fusion(scores, weights))
    assert parts["text"][2] == 0.0 and parts["text"][0] == pytest.approx(2.0 / 1.8)
    parts = rrf_contributions(scores, weights, k=60)
    np.testing.assert_allclose(sum(parts.values()), rrf_fusion(scores, weights, k=60))
    assert parts["visual"][2] == pytest.approx(0.5 / 61) and parts["bm25"][0] == 0.0
