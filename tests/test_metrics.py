"""The metrics against independent computations: scikit-learn, and small cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ramtag import metrics


def test_ap_equals_sklearn_on_tie_free_random_scores() -> None:
    rng = np.random.default_rng(6)
    scores = rng.permutation(400 * 12).reshape(400, 12).astype(np.float32) / (400 * 12)  # all distinct
    targets = rng.random((400, 12)) < np.linspace(0.02, 0.6, 12)
    got = metrics.average_precision(scores, targets)
    for k in range(12):
        assert got[k] == pytest.approx(average_precision_score(targets[:, k], scores[:, k]), abs=1e-9)


def test_ap_with_ties_is_sklearn_and_order_free() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=(60, 4)).astype(np.float32) / 4  # many ties
    targets = rng.random((60, 4)) < 0.4
    got = metrics.average_precision(scores, targets)
    for k in range(4):
        assert got[k] == pytest.approx(average_precision_score(targets[:, k], scores[:, k]), abs=1e-9)
    shuffled = rng.permutation(60)
    np.testing.assert_allclose(metrics.average_precision(scores[shuffled], targets[shuffled]), got)


def test_ap_by_hand() -> None:
    # Ranked 0.9 (+), 0.8 (-), 0.7 (+), 0.6 (-), 0.5 (+): precisions at the positives 1, 2/3, 3/5.
    scores = np.array([0.5, 0.9, 0.6, 0.8, 0.7])
    targets = np.array([1, 1, 0, 0, 1], dtype=bool)
    assert metrics.average_precision(scores, targets)[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_ap_ties_rank_together_by_hand() -> None:
    # 0.9 (+), then a block of three at 0.5 holding one positive, then 0.1 (+).
    # Positive at 0.9: 1/1. The tied positive sees the whole block: 2 positives in 4. Last: 3/5.
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    targets = np.array([0, 1, 1, 1, 0], dtype=bool)
    assert metrics.average_precision(scores, targets)[0] == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)
    # All tied: every positive sees the base rate.
    assert metrics.average_precision(np.full(4, 0.3), np.array([1, 0, 0, 1], bool))[0] == pytest.approx(0.5)


def test_classes_without_positives_count_zero_in_the_official_map() -> None:
    scores = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)  # third class: no positive
    result = metrics.mean_average_precision(scores, targets)
    np.testing.assert_allclose(result.per_class, [1.0, 1.0, 0.0])
    assert result.official == pytest.approx(2 / 3)
    assert result.over_positive == pytest.approx(1.0)
    assert result.classes_without_positives == 1
    np.testing.assert_array_equal(result.positives, [1, 1, 0])


def test_official_numbers_without_ties() -> None:
    """Checked against the official formula written out here (cumulative hits over rank)."""
    rng = np.random.default_rng(8)
    scores = rng.random((50, 3))
    targets = rng.random((50, 3)) < 0.3
    for k in range(3):
        order = np.argsort(-scores[:, k])
        hits = targets[order, k]
        precision_at = np.cumsum(hits) / np.arange(1, 51)
        expected = precision_at[hits].sum() / max(hits.sum(), 1)
        assert metrics.average_precision(scores, targets)[k] == pytest.approx(expected)


def test_predict_is_strictly_above_in_float32() -> None:
    scores = np.array([[0.5, 0.6, 0.7]], dtype=np.float32)
    np.testing.assert_array_equal(metrics.predict(scores, np.array([0.5, 0.5, 0.8])), [[False, True, False]])
    # A threshold written as a float64 just under the float32 score still does not tag it.
    assert not metrics.predict(np.float32([0.1]), [float(np.float32(0.1))])[0, 0]


def test_f1_family_by_hand() -> None:
    predicted = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 1, 0]], dtype=bool)
    # class 0: tp 2 fp 1 fn 1; class 1: tp 2 fp 1 fn 0; class 2: never predicted, 2 positives.
    result = metrics.precision_recall(predicted, targets)
    np.testing.assert_array_equal(result.true_positives, [2, 2, 0])
    np.testing.assert_allclose(result.precision, [2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(result.recall, [2 / 3, 1, 0])
    cp, cr = (2 / 3 + 2 / 3 + 0) / 3, (2 / 3 + 1 + 0) / 3
    op, orr = 4 / 6, 4 / 7
    assert result.CP == pytest.approx(cp)
    assert result.CR == pytest.approx(cr)
    assert result.CF1 == pytest.approx(2 * cp * cr / (cp + cr))
    assert result.OP == pytest.approx(op)
    assert result.OR == pytest.approx(orr)
    assert result.OF1 == pytest.approx(2 * op * orr / (op + orr))
    assert set(result.summary()) == {"CP", "CR", "CF1", "OP", "OR", "OF1"}


def test_f1_family_when_nothing_is_predicted_or_positive() -> None:
    result = metrics.precision_recall(np.zeros((3, 2), bool), np.zeros((3, 2), bool))
    assert result.summary() == {"CP": 0.0, "CR": 0.0, "CF1": 0.0, "OP": 0.0, "OR": 0.0, "OF1": 0.0}


def test_calibrate_best_f1_splits_between_scores() -> None:
    scores = np.array([[0.9, 0.3], [0.8, 0.2], [0.4, 0.1], [0.35, 0.05]], dtype=np.float32)
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    result = metrics.calibrate(scores, targets, np.array([0.5, 0.7]))
    assert 0.4 <= result.thresholds[0] < 0.8
    assert result.thresholds[0] == np.float32(0.6)  # the middle, short
    assert result.thresholds[1] == np.float32(0.7)  # no positives: kept
    np.testing.assert_array_equal(result.calibrated, [True, False])
    np.testing.assert_array_equal(result.without_positives, [False, True])
    np.testing.assert_array_equal(metrics.predict(scores, result.thresholds)[:, 0], targets[:, 0])


def test_calibrate_target_precision_takes_the_lowest_threshold_reaching_it() -> None:
    # Ranked: + + - + - - ; precision at each cutoff 1, 1, 2/3, 3/4, 3/5, 1/2.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], dtype=np.float32)[:, None]
    targets = np.array([1, 1, 0, 1, 0, 0], dtype=bool)[:, None]
    reach = metrics.calibrate(scores, targets, np.array([0.99]), target_precision=0.75)
    assert 0.5 <= reach.thresholds[0] < 0.6  # keeps the top four (precision 3/4)
    strict = metrics.calibrate(scores, targets, np.array([0.99]), target_precision=0.9)
    assert 0.7 <= strict.thresholds[0] < 0.8
    best = metrics.calibrate(scores, targets, np.array([0.99]))  # F1 1/2, 4/5, 2/3, 6/7, 3/4, 2/3
    assert 0.5 <= best.thresholds[0] < 0.6
    never = metrics.calibrate(np.array([[0.9], [0.1]]), np.array([[0], [1]], bool), np.array([0.3]), target_precision=1.0)
    assert never.thresholds[0] == np.float32(0.3) and never.unreachable[0]


def test_calibrate_with_ties_and_the_lowest_score() -> None:
    scores = np.array([0.5, 0.5, 0.2, 0.2], dtype=np.float32)[:, None]
    targets = np.array([1, 0, 1, 1], dtype=bool)[:, None]
    result = metrics.calibrate(scores, targets, np.array([0.9]))
    # Keeping everything (F1 6/7) beats keeping the tied top pair (F1 2/5): below the lowest score.
    assert 0.0 <= result.thresholds[0] < 0.2
    assert metrics.predict(scores, result.thresholds).all()


def test_separating_threshold_in_float32() -> None:
    low = np.float32(0.3)
    high = np.nextafter(low, np.float32(1))  # adjacent: no float32 strictly between
    t = metrics.separating_threshold(high, low)
    assert low <= t < high
    assert metrics.separating_threshold(0.8, 0.4) == np.float32(0.6)
    assert metrics.separating_threshold(0.8, None) == np.float32(0.4)
