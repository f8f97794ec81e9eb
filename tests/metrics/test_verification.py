"""Verification scores on distances whose answers are known (``leam.metrics.verification``), checked by
hand and against slow counts and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from leam.errors import LeamError
from leam.metrics.verification import (
    available_same_pairs,
    best_threshold,
    cross_validated_accuracy,
    draw_pairs,
    pair_distances,
    roc_auc,
    roc_curve,
    tar_at_far,
    ten_fold_shortfall,
    verification_metrics,
)


def folds(n: int) -> np.ndarray:
    return np.arange(n) % 10


def test_best_threshold_by_hand():
    dist = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert best_threshold(dist, np.array([1, 1, 1, 0, 0, 0], bool)) == pytest.approx(0.5)
    # a different pair at 0.15 among the same ones: cutting at 0.6 misses only it (4 of 5 right)
    assert best_threshold(np.array([0.1, 0.15, 0.2, 0.3, 0.9]), np.array([1, 0, 1, 1, 0], bool)) == pytest.approx(0.6)
    # 0.125 and 0.55 are both right 3 times out of 4: the smaller wins
    assert best_threshold(np.array([0.1, 0.15, 0.2, 0.9]), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.125)
    assert best_threshold(np.array([0.5, 0.5]), np.array([0, 0], bool)) == 0.5  # none accepted: d < 0.5
    assert best_threshold(np.array([0.5, 0.5]), np.array([1, 1], bool)) > 0.5  # all accepted


def test_ten_fold_accuracy_separable_is_one():
    same, different = np.linspace(0.1, 0.5, 50), np.linspace(0.6, 1.4, 50)
    acc, std, thresholds = cross_validated_accuracy(same, different, folds(50), folds(50))
    assert (acc, std) == (1.0, 0.0)
    assert all(0.5 < t < 0.6 for t in thresholds) and len(thresholds) == 10


def test_ten_fold_accuracy_with_one_outlier_per_fold():
    # each fold holds 10 same pairs at 0.1 (one of them an outlier at 0.9) and 10 different pairs at 0.8:
    # the threshold chosen on nine folds lies between 0.1 and 0.8 and misses exactly the outlier
    same = np.full(100, 0.1)
    same[np.arange(10) * 11] = 0.9  # pairs 0, 11, 22, ..., 99: one in each fold
    assert sorted(folds(100)[same == 0.9]) == list(range(10))
    different = np.full(100, 0.8)
    acc, std, thresholds = cross_validated_accuracy(same, different, folds(100), folds(100))
    assert acc == pytest.approx(19 / 20) and std == pytest.approx(0.0)
    assert all(0.1 < t < 0.8 for t in thresholds)


def test_auc_by_hand_and_against_a_slow_count():
    assert roc_auc(np.array([1.0, 2.0]), np.array([1.5, 3.0])) == pytest.approx(3 / 4)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    same = np.round(rng.normal(0.5, 0.2, 300), 2)  # rounded: many ties
    different = np.round(rng.normal(0.9, 0.2, 250), 2)
    slow = ((different[None, :] > same[:, None]) + 0.5 * (different[None, :] == same[:, None])).mean()
    assert roc_auc(same, different) == pytest.approx(slow, abs=1e-12)
    u = mannwhitneyu(different, same).statistic
    assert roc_auc(same, different) == pytest.approx(u / (len(same) * len(different)), abs=1e-12)


def test_tar_at_far_by_hand():
    different = np.arange(1000.0) + 10.0  # 10, 11, ..., 1009: FAR 1e-3 allows one, so t = 11 (d < 11)
    same = np.array([5.0, 10.5, 10.99, 11.0, 12.0])
    assert tar_at_far(same, different) == pytest.approx(3 / 5)
    assert tar_at_far(same, np.concatenate([different, [2000.0] * 1000])) == pytest.approx(4 / 5)  # two allowed
    assert tar_at_far(same, different[:999]) is None  # too few different pairs to resolve 1e-3


def test_roc_curve_ends_and_monotone():
    rng = np.random.default_rng(1)
    same, different = rng.uniform(0, 1, 40), rng.uniform(0.5, 1.5, 60)
    far, tar, thresholds = roc_curve(same, different)
    assert (far[0], tar[0], far[-1], tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(far) >= 0).all() and (np.diff(tar) >= 0).all() and (np.diff(thresholds) > 0).all()


def test_verification_metrics_all_together():
    same, different = np.linspace(0.2, 0.5, 1000), np.linspace(0.55, 1.5, 1000)
    m = verification_metrics(same, different, folds(1000), folds(1000), threshold=0.6)
    assert (m.n_same, m.n_different, m.accuracy_10fold, m.auc, m.tar_at_far) == (1000, 1000, 1.0, 1.0, 1.0)
    assert m.accuracy_at_spec == pytest.approx((1000 + 1000 - (different < 0.6).sum()) / 2000)
    assert m.median_same == pytest.approx(0.35) and m.median_different == pytest.approx(1.025)
    with pytest.raises(LeamError, match="expected same and different pairs to score, got 1000 same and 0 different"):
        verification_metrics(same, different[:0], folds(1000), folds(0))


def test_ten_fold_accuracy_needs_both_kinds_in_every_fold():
    """One same and one different pair (both in fold 0): no 10-fold accuracy (None, with the reason), but
    the scores that one pair of each kind defines are given: AUC, accuracy at the spec threshold, medians."""
    m = verification_metrics(np.array([0.4]), np.array([0.9]), folds(1), folds(1), threshold=0.6)
    assert (m.accuracy_10fold, m.accuracy_10fold_std, m.threshold_10fold) == (None, None, None)
    assert (m.n_same, m.n_different, m.auc, m.accuracy_at_spec, m.median_same, m.median_different) == \
        (1, 1, 1.0, 1.0, 0.4, 0.9)
    assert ten_fold_shortfall(folds(1), folds(1)).startswith(
        "it needs a same and a different pair in each of the 10 folds (at least 10 of each kind), got 1 same and "
        "1 different scored pairs (9 folds lacking one)")
    assert ten_fold_shortfall(folds(10), folds(9)).endswith("(1 fold lacking one); draw more with --pairs, or add "
                                                            "photos")
    assert ten_fold_shortfall(folds(10), folds(10)) is None
    m = verification_metrics(np.linspace(0.1, 0.5, 10), np.linspace(0.6, 1.0, 10), folds(10), folds(10))
    assert (m.accuracy_10fold, m.accuracy_10fold_std) == (1.0, 0.0)  # ten pairs of each kind are enough


def test_cross_validation_refuses_a_single_fold():
    with pytest.raises(ValueError, match=r"pairs in two or more folds to cross-validate, got folds \[3\]"):
        cross_validated_accuracy(np.array([0.1, 0.2]), np.array([0.9]), np.array([3, 3]), np.array([3]))


def test_pair_distances_euclidean_and_cosine():
    e = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    pairs = np.array([[0, 1], [0, 2]])
    np.testing.assert_allclose(pair_distances(e, pairs, "euclidean"), [np.sqrt(5), 2.0])
    np.testing.assert_allclose(pair_distances(e, pairs, "cosine"), [1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="expected metric"):
        pair_distances(e, pairs, "manhattan")


# ----------------------------------------------------------------------------------- the pairs


def test_draw_pairs_from_identity_sizes_by_hand():
    """Identities of 3, 2 and 1 photos (indices 0-2, 3-4, 5): 3 + 1 same pairs, all taken, and as many
    different pairs, each across two identities, none twice; the same seed draws the same pairs."""
    counts = np.array([3, 2, 1])
    assert available_same_pairs(counts) == 4
    same, different = draw_pairs(counts, 3000, seed=0)
    assert {tuple(sorted(p)) for p in same.tolist()} == {(0, 1), (0, 2), (1, 2), (3, 4)}
    owner = np.repeat(np.arange(3), counts)
    assert len(different) == 4 and (owner[different[:, 0]] != owner[different[:, 1]]).all()
    assert len({tuple(sorted(p)) for p in different.tolist()}) == 4
    again = draw_pairs(counts, 3000, seed=0)
    np.testing.assert_array_equal(same, again[0])
    np.testing.assert_array_equal(different, again[1])
    with pytest.raises(ValueError, match="n_pairs >= 1"):
        draw_pairs(counts, 0)
