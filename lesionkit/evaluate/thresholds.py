"""Decision thresholds for a binary score, chosen on VALIDATION predictions and then applied unchanged to test.

A sample is predicted positive when ``score >= threshold``; candidates are the distinct validation scores (the
thresholds of the ROC curve). Methods:

* ``youden``: maximise Youden's J = TPR − FPR (= sensitivity + specificity − 1);
* ``gmean``: maximise √(TPR · (1 − FPR)) (geometric mean of sensitivity and specificity);
* ``sensitivity``: the highest threshold whose validation sensitivity is ≥ ``target_sensitivity`` (so the best
  specificity that keeps that sensitivity);
* ``fixed``: a given number (``value``), e.g. 0.5.

Ties between candidates go to the highest threshold (fewest positive calls).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lesionkit.errors import InputError, UsageError
from lesionkit.evaluate.metrics import RankedScores

__all__ = ["METHODS", "ThresholdChoice", "choose_threshold", "parse_threshold_method"]

METHODS = ("youden", "gmean", "sensitivity", "fixed")


@dataclass
class ThresholdChoice:
    method: str
    threshold: float
    chosen_on: str  # "val" normally; recorded so a report can flag anything else
    n: int
    n_pos: int
    sensitivity: float | None  # on the data it was chosen on
    specificity: float | None
    target_sensitivity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_threshold_method(text: str) -> tuple[str, float | None]:
    """``youden`` | ``gmean`` | ``sensitivity:0.9`` | ``fixed:0.3`` → (method, parameter)."""
    name, _, arg = text.strip().partition(":")
    name = name.lower()
    if name not in METHODS:
        raise UsageError(f"--threshold {text!r}: unknown method", hint="choose one of youden, gmean, sensitivity:0.9, fixed:0.5")
    if name in ("sensitivity", "fixed"):
        try:
            v = float(arg)
        except ValueError:
            raise UsageError(f"--threshold {text!r}: {name} needs a number, e.g. {name}:{'0.9' if name == 'sensitivity' else '0.5'}") from None
        if name == "sensitivity" and not 0 < v <= 1:
            raise UsageError(f"--threshold {text!r}: the target sensitivity must be in (0, 1]")
        return name, v
    if arg:
        raise UsageError(f"--threshold {text!r}: {name} takes no parameter")
    return name, None


def choose_threshold(y: np.ndarray, score: np.ndarray, method: str = "youden", param: float | None = None,
                     chosen_on: str = "val") -> ThresholdChoice:
    """Pick a threshold on ``(y, score)`` (validation data) with ``method`` (see the module docstring)."""
    y = np.asarray(y, dtype=bool)
    rs = RankedScores(y, score)
    n, n_pos = len(y), int(y.sum())
    if method == "fixed":
        t = float(param if param is not None else 0.5)
        tp = int(np.sum(y & (np.asarray(score) >= t)))
        tn = int(np.sum(~y & (np.asarray(score) < t)))
        return ThresholdChoice("fixed", t, chosen_on, n, n_pos, tp / n_pos if n_pos else None,
                               tn / (n - n_pos) if n > n_pos else None)
    roc = rs.roc()
    if roc is None:
        raise InputError(f"cannot choose a {method} threshold on {chosen_on} predictions: they need positives and "
                         f"negatives (found {n_pos} positives among {n})",
                         hint="use --threshold fixed:0.5, or a validation fold with both classes")
    fpr, tpr, thr = roc[0][1:], roc[1][1:], roc[2][1:]  # drop the +inf point (nothing positive)
    if method == "youden":
        k = int(np.argmax(tpr - fpr))
    elif method == "gmean":
        k = int(np.argmax(np.sqrt(tpr * (1.0 - fpr))))
    elif method == "sensitivity":
        if param is None:
            raise UsageError("the sensitivity method needs a target, e.g. --threshold sensitivity:0.9")
        k = int(np.flatnonzero(tpr >= param - 1e-12)[0])
    else:
        raise UsageError(f"unknown threshold method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    return ThresholdChoice(method, float(thr[k]), chosen_on, n, n_pos, float(tpr[k]), float(1.0 - fpr[k]),
                           param if method == "sensitivity" else None)
