"""Classification losses: cross-entropy, binary cross-entropy with logits, focal; label smoothing; class weights.

The form is chosen from the logits at call time: ONE logit per sample (shape [B] or [B, 1], a binary target) →
the sigmoid form; C ≥ 2 logits → the softmax form. Targets are int64 class indices [B]; entries < 0 (missing
labels) are ignored. Class weights ``w`` (length C, e.g. ``W_c = N/(C·N_c)`` from
``lesionkit.data.samplers.class_weights``):

* ``ce``: ``torch.nn.functional.cross_entropy(weight=w, label_smoothing=ε)`` (mean over samples, normalised by
  the summed weight of the true classes — torch's convention). With one logit: as ``bce``.
* ``bce``: ``binary_cross_entropy_with_logits`` with ``pos_weight = w[1]/w[0]`` (= N_neg/N_pos for balanced
  weights) and smoothed targets ``y·(1−ε) + ε/2``. With C logits: one-vs-rest over one-hot (smoothed) targets,
  each class column weighted by ``w_c``.
* ``focal`` (Lin et al. 2017), softmax form: per class ``f_c = −(1−p_c)^γ·log p_c``; per sample
  ``(1−ε)·w_y·f_y + (ε/C)·Σ_c w_c·f_c``; mean = sum / Σ w_y. With ``γ = 0`` this is exactly ``ce``.
  Sigmoid form: ``−[y'·w₁·(1−p)^γ·log p + (1−y')·w₀·p^γ·log(1−p)]``, y' smoothed, mean = sum / Σ w_y
  (γ = 0 and no weights = ``bce``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import UsageError

LOSSES = ("ce", "bce", "focal")


class ClassificationLoss(nn.Module):
    """See the module docstring. ``forward(logits [B, C] or [B] / [B, 1], target int64 [B]) -> scalar``."""

    def __init__(self, kind: str, n_classes: int, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, focal_gamma: float = 2.0):
        super().__init__()
        self.kind = kind
        self.n_classes = n_classes
        self.label_smoothing = float(label_smoothing)
        self.focal_gamma = float(focal_gamma)
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        self.register_buffer("class_weights", w, persistent=False)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, n_classes={self.n_classes}, label_smoothing={self.label_smoothing}, "
                f"focal_gamma={self.focal_gamma}, weighted={self.class_weights is not None}")

    def _weights(self, n: int, device: torch.device) -> torch.Tensor:
        if self.class_weights is None:
            return torch.ones(n, device=device)
        if self.class_weights.numel() != n:
            raise ValueError(f"{self.class_weights.numel()} class weights for {n} classes")
        return self.class_weights.to(device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long().flatten()
        binary = logits.ndim == 1 or logits.shape[-1] == 1
        logits = logits.float()
        if binary:
            logits = logits.reshape(-1)
        keep = target >= 0
        if not bool(keep.all()):
            logits, target = logits[keep], target[keep]
        if target.numel() == 0:
            return logits.sum() * 0.0
        eps = self.label_smoothing
        if binary:
            w = self._weights(2, logits.device)
            y = target.float() * (1 - eps) + eps / 2
            if self.kind == "focal":
                g = self.focal_gamma
                p = torch.sigmoid(logits)
                pos = -w[1] * (1 - p).pow(g) * F.logsigmoid(logits)
                neg = -w[0] * p.pow(g) * F.logsigmoid(-logits)
                return (y * pos + (1 - y) * neg).sum() / w[target].sum()
            pos_weight = None if self.class_weights is None else (w[1] / w[0]).reshape(1)
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
        C = logits.shape[-1]
        if self.kind == "ce":
            return F.cross_entropy(logits, target, weight=self.class_weights.to(logits.device)
                                   if self.class_weights is not None else None, label_smoothing=eps)
        w = self._weights(C, logits.device)
        if self.kind == "bce":
            y = F.one_hot(target, C).float() * (1 - eps) + eps / 2
            per = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w
            return per.mean()
        logp = F.log_softmax(logits, dim=-1)
        f = -(1 - logp.exp()).pow(self.focal_gamma) * logp  # [B, C]
        f_y = f.gather(1, target[:, None]).squeeze(1)
        w_y = w[target]
        per = (1 - eps) * w_y * f_y
        if eps > 0:
            per = per + (eps / C) * (f * w).sum(dim=1)
        return per.sum() / w_y.sum()


def build_loss(kind: str, n_classes: int, class_weights: torch.Tensor | None = None,
               label_smoothing: float = 0.0, focal_gamma: float = 2.0) -> nn.Module:
    """Build the training loss (see the module docstring). ``label_smoothing`` ε in [0, 1); ``focal_gamma`` γ ≥ 0;
    ``class_weights`` length ``n_classes`` (2 for a binary target with one logit) or None."""
    kind = kind.lower()
    problems = []
    if kind not in LOSSES:
        problems.append(f"unknown --loss {kind!r}; choose one of {', '.join(LOSSES)}")
    if n_classes < 2:
        problems.append(f"need >= 2 classes, got {n_classes}")
    if not 0 <= label_smoothing < 1:
        problems.append(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    if focal_gamma < 0:
        problems.append(f"--focal-gamma must be >= 0, got {focal_gamma}")
    if class_weights is not None:
        cw = torch.as_tensor(class_weights)
        if cw.numel() != n_classes:
            problems.append(f"{cw.numel()} class weights given for {n_classes} classes")
        elif not bool((cw > 0).all()):
            problems.append(f"class weights must be > 0, got {cw.tolist()}")
    if problems:
        raise UsageError("invalid loss settings", details=problems)
    return ClassificationLoss(kind, n_classes, class_weights, label_smoothing, focal_gamma)
