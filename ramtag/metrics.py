"""The paper's tagging metrics on arrays: AP/mAP, CP/CR/CF1, OP/OR/OF1, and threshold calibration.

Everything takes ``scores`` (images × classes, float) and ``targets`` (images × classes, bool) and
opens no file: ``evaluation.py`` reads the outputs and the ground truth, this module only counts.

AP follows the official definition (RAM/RAM++ ``get_mAP``): the mean, over a class's positives, of
the precision among the images ranked at or above that positive; a class without positives has
AP 0. The official code ranks ties in whatever order ``argsort`` leaves them, so its value depends
on the sort algorithm; here images with equal scores are ranked together (each tied positive sees
the precision of the whole tied block), which is order-independent and equals scikit-learn's
``average_precision_score``. Without ties all three agree.

A class is predicted for an image when its score is strictly above the threshold, as ``ramtag run``
tags; comparisons happen in float32, the precision the scores and thresholds are kept in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"{name} must be images × classes, got shape {values.shape}")
    return values


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP of each class (column); 0 for a class without positives."""
    scores = _as_matrix(scores, "scores").astype(np.float32, copy=False)
    targets = _as_matrix(targets, "targets").astype(bool, copy=False)
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    images, classes = scores.shape
    if images == 0:
        return np.zeros(classes)
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=0)
    hits = np.take_along_axis(targets, order, axis=0)
    true_positives = np.cumsum(hits, axis=0)
    # Each rank looks at the end of its block of equal scores: everything tied with it counts.
    rank = np.arange(images)[:, None]
    block_end = np.ones_like(hits)
    block_end[:-1] = ranked[:-1] != ranked[1:]
    ends = np.where(block_end, rank, images)
    last = np.minimum.accumulate(ends[::-1], axis=0)[::-1]
    precision = np.take_along_axis(true_positives, last, axis=0) / (last + 1)
    positives = hits.sum(axis=0)
    total = np.where(hits, precision, 0.0).sum(axis=0)
    return np.divide(total, positives, out=np.zeros(classes), where=positives > 0)


@dataclass(frozen=True)
class MeanAP:
    """mAP two ways: over every class (official: no positives counts 0) and over classes with positives."""

    per_class: np.ndarray
    positives: np.ndarray

    @property
    def official(self) -> float:
        return float(self.per_class.mean()) if self.per_class.size else 0.0

    @property
    def over_positive(self) -> float:
        having = self.positives > 0
        return float(self.per_class[having].mean()) if having.any() else 0.0

    @property
    def classes_without_positives(self) -> int:
        return int((self.positives == 0).sum())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> MeanAP:
    targets = _as_matrix(targets, "targets").astype(bool, copy=False)
    return MeanAP(average_precision(scores, targets), targets.sum(axis=0))


def predict(scores: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Which classes are tagged: strictly above threshold, in float32 like the tagger."""
    scores = _as_matrix(scores, "scores").astype(np.float32, copy=False)
    return scores > np.asarray(thresholds, dtype=np.float32)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass(frozen=True)
class PrecisionRecall:
    """Per-class counts at fixed thresholds and the six usual summaries.

    CP and CR average the per-class precision and recall over every class (a class never predicted
    has precision 0, one without positives recall 0, as in the official code); CF1 is their harmonic
    mean. OP, OR and OF1 pool the counts of all classes first.
    """

    true_positives: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def CP(self) -> float:  # noqa: N802 - the paper's names
        return float(self.precision.mean()) if self.precision.size else 0.0

    @property
    def CR(self) -> float:  # noqa: N802
        return float(self.recall.mean()) if self.recall.size else 0.0

    @property
    def CF1(self) -> float:  # noqa: N802
        return _f1(self.CP, self.CR)

    @property
    def OP(self) -> float:  # noqa: N802
        tp, fp = self.true_positives.sum(), self.false_positives.sum()
        return float(tp / (tp + fp)) if tp + fp else 0.0

    @property
    def OR(self) -> float:  # noqa: N802
        tp, fn = self.true_positives.sum(), self.false_negatives.sum()
        return float(tp / (tp + fn)) if tp + fn else 0.0

    @property
    def OF1(self) -> float:  # noqa: N802
        return _f1(self.OP, self.OR)

    def summary(self) -> dict[str, float]:
        return {"CP": self.CP, "CR": self.CR, "CF1": self.CF1, "OP": self.OP, "OR": self.OR, "OF1": self.OF1}


def precision_recall(predicted: np.ndarray, targets: np.ndarray) -> PrecisionRecall:
    predicted = _as_matrix(predicted, "predicted").astype(bool, copy=False)
    targets = _as_matrix(targets, "targets").astype(bool, copy=False)
    if predicted.shape != targets.shape:
        raise ValueError(f"predictions {predicted.shape} and targets {targets.shape} differ in shape")
    return PrecisionRecall(
        (predicted & targets).sum(axis=0),
        (predicted & ~targets).sum(axis=0),
        (~predicted & targets).sum(axis=0),
    )


# --- calibration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Thresholds chosen per class, and why each class kept or changed its previous one."""

    thresholds: np.ndarray  # float32, one per class
    calibrated: np.ndarray  # bool: chosen on this data
    without_positives: np.ndarray  # bool: kept, nothing to learn from
    unreachable: np.ndarray  # bool: kept, no threshold reaches the target precision


def calibrate(
    scores: np.ndarray,
    targets: np.ndarray,
    previous: np.ndarray,
    *,
    target_precision: float | None = None,
) -> Calibration:
    """Per class, the threshold with the best F1 or the lowest one reaching ``target_precision``.

    Classes without positives, and those where no threshold reaches the target, keep ``previous``.
    A chosen threshold lies strictly between the lowest score it keeps and the next lower score,
    preferring a value with at most six decimals (what ``ramtag run`` records), so the same scores
    re-tagged with it give exactly the chosen split.
    """
    scores = _as_matrix(scores, "scores").astype(np.float32, copy=False)
    targets = _as_matrix(targets, "targets").astype(bool, copy=False)
    thresholds = np.array(previous, dtype=np.float32, copy=True)
    classes = scores.shape[1]
    calibrated = np.zeros(classes, dtype=bool)
    without = targets.sum(axis=0) == 0
    unreachable = np.zeros(classes, dtype=bool)
    for k in np.flatnonzero(~without):
        chosen = _best_cutoff(scores[:, k], targets[:, k], target_precision)
        if chosen is None:
            unreachable[k] = True
            continue
        thresholds[k] = chosen
        calibrated[k] = True
    return Calibration(thresholds, calibrated, without, unreachable)


def _best_cutoff(scores: np.ndarray, targets: np.ndarray, target_precision: float | None) -> np.float32 | None:
    negated, inverse = np.unique(-scores, return_inverse=True)
    levels = -negated  # the distinct scores, high to low
    count_at = np.bincount(inverse, minlength=len(levels))
    positives_at = np.bincount(inverse, weights=targets, minlength=len(levels))
    tp = np.cumsum(positives_at)  # predicting every image scored >= levels[j]
    predicted = np.cumsum(count_at)
    precision = tp / predicted
    recall = tp / targets.sum()
    if target_precision is None:
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=tp > 0)
        cut = int(np.argmax(f1))  # the first best: the highest threshold among equals
    else:
        reaching = np.flatnonzero(precision >= target_precision - 1e-12)
        if reaching.size == 0:
            return None
        cut = int(reaching[-1])
    below = levels[cut + 1] if cut + 1 < len(levels) else None
    return separating_threshold(levels[cut], below)


def separating_threshold(lowest_kept: float, highest_dropped: float | None) -> np.float32:
    """A float32 ``t`` with ``highest_dropped <= t < lowest_kept``, short when possible."""
    kept = np.float32(lowest_kept)
    dropped = np.float32(highest_dropped) if highest_dropped is not None else None
    if dropped is None:
        if kept <= 0:
            return np.float32(0.0)
        dropped = np.float32(0.0)
        middle = float(kept) / 2
    else:
        middle = (float(kept) + float(dropped)) / 2
    for candidate in (round(middle, 6), middle):
        value = np.float32(candidate)
        if dropped <= value < kept:
            return value
    return dropped
