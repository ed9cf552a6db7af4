"""The video prior: exact standardised fusion for few videos; a sketch shortlist that finds the
same best videos as scoring them all, for many."""

import numpy as np

from retrieval.fusion import weighted_fusion
from retrieval.video_prior import VideoPrior

WEIGHTS = {"text": 1.0, "visual": 1.0, "audio": 0.5}


def videos(n, seed=0, dims=(("text", 48), ("visual", 64), ("audio", 32))):
    """Video vectors with a low intrinsic dimension (like mean embeddings), some without audio."""
    rng = np.random.default_rng(seed)
    ids = [f"v{i:05d}" for i in range(n)]
    out = {}
    for m, d in dims:
        basis = np.linalg.qr(rng.standard_normal((d, 12)))[0].T
        x = rng.standard_normal((n, 12)) @ basis + 0.1 * rng.standard_normal((n, d))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        keep = np.arange(n) % 7 != 3 if m == "audio" else np.ones(n, bool)
        out[m] = ([v for v, k in zip(ids, keep) if k], x[keep])
    return ids, out


def query(per, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for m, (_, x) in per.items():
        q = x[rng.integers(len(x))] + 0.5 * rng.standard_normal(x.shape[1]) / np.sqrt(x.shape[1])
        out[m] = (q / np.linalg.norm(q)).astype(np.float32)
    return out


def test_few_videos_get_the_exact_standardised_prior():
    ids, per = videos(300)
    prior = VideoPrior.of(per, ["no-vectors"])
    qv = query(per, 1)
    cal = prior.calibrations(qv, WEIGHTS)
    got = prior.prior(qv, WEIGHTS, cal, prior.positions_of(ids))
    want = {}
    for m, (vids, x) in per.items():
        z = np.full(len(ids), np.nan)
        sims = (x @ qv[m]).astype(np.float64)
        z[[ids.index(v) for v in vids]] = (sims - sims.mean()) / sims.std()
        want[m] = z
    np.testing.assert_allclose(got, weighted_fusion(want, WEIGHTS), atol=1e-5)
    assert prior.prior(qv, WEIGHTS, cal, prior.positions_of(["no-vectors"]))[0] == 0.0  # neutral
    assert list(prior.positions_of(["nope"])) == [-1]


def test_sketch_shortlist_finds_the_exact_best_videos():
    ids, per = videos(6000, seed=2)
    sketched, exact = VideoPrior.of(per, exact_below=2048), VideoPrior.of(per, exact_below=10**9)
    assert sketched._sketch is not None and exact._sketch is None
    recalls = []
    for seed in range(20):
        qv = query(per, 100 + seed)
        cal = exact.calibrations(qv, WEIGHTS)
        got, got_p = sketched.best(qv, WEIGHTS, cal, 20)
        want, want_p = exact.best(qv, WEIGHTS, cal, 20)
        recalls.append(len(set(got) & set(want)) / 20)
        np.testing.assert_allclose(got_p[: len(want_p)], np.sort(got_p)[::-1])  # re-scored exactly, best first
    assert np.mean(recalls) >= 0.95, recalls


def test_a_snapshots_derived_state_gives_the_same_video_level_without_deriving_it_again(monkeypatch):
    """What a snapshot derived once (moments, axes, sketch) gives the same shortlist and priors
    as deriving it in the prior; none of it is computed again."""
    from index.catalog import derive_video_level
    from retrieval import fusion

    ids, per = videos(6000, seed=3)
    built = VideoPrior.of(per, exact_below=2048)
    derived = derive_video_level(built.vectors, built.present, 2048)
    assert "sketch" in derived and derived["sketch"].dtype == np.float16

    def no_deriving(*a, **k):
        raise AssertionError("derived again")

    with monkeypatch.context() as patch:
        patch.setattr(fusion.Moments, "of", no_deriving)
        patch.setattr(fusion.Moments, "principal_axes", no_deriving)
        again = VideoPrior(built.ids, built.vectors, built.present, derived)
    for seed in range(5):
        qv = query(per, 300 + seed)
        cal, cal_again = built.calibrations(qv, WEIGHTS), again.calibrations(qv, WEIGHTS)
        assert cal == cal_again
        got, want = again.best(qv, WEIGHTS, cal, 20), built.best(qv, WEIGHTS, cal, 20)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
