"""Scores of predictions against the truth, each beside the baseline it must beat.

A classifier is compared with always answering the training set's most common class; a
regression with always answering the training targets' mean (R2 = 0 on average).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from deepgrad.train.types import cost_rise  # the one definition, shared with fit

__all__ = [
    "ClassificationScore",
    "RegressionScore",
    "classification_score",
    "regression_score",
    "cost_rise",
]


class ClassificationScore(NamedTuple):
    """accuracy; baseline: the accuracy of always answering ``majority``; per_class:
    (label, correct, total) for each label of the truth."""

    accuracy: float
    baseline: float
    majority: object
    per_class: tuple
    m: int


class RegressionScore(NamedTuple):
    """R2 (1 - SSE / SST), RMSE and MAE in the targets' units; baseline_rmse: always
    answering the reference mean."""

    r2: float
    rmse: float
    mae: float
    baseline_rmse: float
    m: int


def classification_score(y_true, y_pred, reference=None) -> ClassificationScore:
    """Accuracy of y_pred, the majority-class baseline (the most common label of
    ``reference``, default y_true) and per-class counts."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    ref = y_true if reference is None else np.asarray(reference).reshape(-1)
    labels, counts = np.unique(ref, return_counts=True)
    majority = labels[int(np.argmax(counts))]
    correct = y_pred == y_true
    per_class = tuple(
        (c.item(), int(np.sum(correct[y_true == c])), int(np.sum(y_true == c)))
        for c in np.unique(y_true)
    )
    return ClassificationScore(
        float(np.mean(correct)),
        float(np.mean(y_true == majority)),
        majority.item(),
        per_class,
        len(y_true),
    )


def regression_score(y_true, y_pred, reference_mean=None) -> RegressionScore:
    """R2, RMSE and MAE over all outputs; the baseline answers ``reference_mean`` (default
    the mean of y_true)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
    mean = y_true.mean(axis=0) if reference_mean is None else np.asarray(reference_mean)
    err = y_pred - y_true
    sse = float(np.sum(err**2))
    sst = float(np.sum((y_true - y_true.mean(axis=0)) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else -math.inf)
    return RegressionScore(
        r2,
        math.sqrt(sse / y_true.size),
        float(np.mean(np.abs(err))),
        math.sqrt(float(np.mean((y_true - mean) ** 2))),
        len(y_true),
    )
