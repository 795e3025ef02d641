"""Bias "unlearning" heads: LNTL, TABE and CLGR (Bevan & Atapour-Abarghouei 2022, "Detecting melanoma fairly").

An auxiliary linear head ``h`` (``LesionNet.aux_head``) reads the same fused features ``f`` as the main head and
is trained to predict a categorical bias attribute ``b`` (skin type, ``ita_category``, an instrument proxy, ...)
with class-weighted cross-entropy. The encoder is pushed to make ``b`` unreadable from ``f``:

* **LNTL** (Kim et al. 2019, "Learning Not to Learn"): encoder + main head minimise
  ``L_main + λ·Σ_k p_k log p_k`` (the negative entropy of ``softmax(h(f))``, i.e. they maximise the bias head's
  uncertainty); the bias head minimises ``CE(h(GRL(f)), b)``, and the gradient reversal layer hands the encoder
  the *reversed* (× coefficient, default −0.1) gradient of that loss.
* **TABE** (Alvi et al. 2018, "Turning a Blind Eye"): encoder + main head minimise ``L_main + λ·CE(softmax(h(f)),
  1/K)``: the cross-entropy against the **uniform distribution** ``−(1/K)·Σ_k log p_k`` (the paper's confusion
  loss; the published skin-tone code used *random* targets ``U(0, 1)`` instead, which is not the uniform
  distribution and changes every step). The bias head alone minimises ``CE(h(f), b)`` on detached features.
* **CLGR**: TABE, with the bias head's classification loss reaching the encoder through the GRL (as LNTL).

How the steps map onto one optimizer step
-----------------------------------------
The published code runs two forward/backward passes per batch. Here one forward pass feeds three terms whose
gradients go only where each method sends them, and one optimizer step applies them:

* the entropy / confusion term goes through the bias head with its weights *detached*, so it moves the encoder
  (and nothing else), exactly as the "main" step of the published code;
* the bias classification term goes through ``GRL(f)`` (LNTL, CLGR) or ``f.detach()`` (TABE), so the bias head
  gets its plain gradient and the encoder gets either the reversed one or none.

Each parameter therefore gets the gradient of exactly the losses the method assigns to it. The difference from
two sequential steps is that the bias step sees the features before, not after, the same batch's main update
(a one-step lag). The published TABE code also stepped the *encoder* optimizer in its auxiliary step without a
GRL, which trains the encoder to predict the bias; TABE here never does.

LNTL without a GRL (``--no-grl``) would send the bias classification gradient into the encoder unreversed,
training it to *encode* the bias — the opposite of the method's purpose — so it is refused unless forced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import UsageError

METHODS = ("none", "lntl", "tabe", "clgr")
#: Weight λ of the entropy (LNTL) / confusion (TABE, CLGR) term, as published (Bevan's --lambdaa / --alpha).
DEFAULT_WEIGHT = {"lntl": 0.01, "tabe": 0.03, "clgr": 0.03}
GRL_SCHEDULES = ("constant", "dann")
#: The bias head's learning rate relative to --lr, as published (TABE/CLGR: --lr-class 3e-3 vs --lr-base 3e-4).
DEFAULT_AUX_LR_MULT = {"lntl": 1.0, "tabe": 10.0, "clgr": 10.0}


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coef: float) -> torch.Tensor:
        ctx.coef = coef
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.coef, None


def grad_reverse(x: torch.Tensor, coef: float = -0.1) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by ``coef`` (negative = reversed; −0.1 as published)."""
    return _GradReverse.apply(x, float(coef))


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``Σ_k p_k log p_k`` with ``p = softmax(logits)`` (LNTL; minimising it maximises entropy)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (logp.exp() * logp).sum(dim=1).mean()


def uniform_confusion(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of the cross-entropy between the uniform distribution 1/K and ``softmax(logits)`` (TABE):
    ``−(1/K)·Σ_k log p_k``; its minimum, ``log K``, is reached at ``p = 1/K``."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -logp.mean(dim=1).mean()


def grl_coefficient(coef: float, schedule: str, progress: float) -> float:
    """The GRL coefficient at training progress ``progress`` ∈ [0, 1]: ``constant`` → ``coef``; ``dann`` (Ganin &
    Lempitsky 2015) → ``coef · (2 / (1 + exp(−10·progress)) − 1)``, ramping from 0 to ``coef``."""
    if schedule == "constant":
        return coef
    p = min(max(progress, 0.0), 1.0)
    return coef * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def bias_class_weights(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """Balanced weights ``N / (K · N_k)`` over the known (>= 0) bias codes; a class absent from training gets 0
    weight (it can never be a target) — at least two classes must be present."""
    known = codes[codes >= 0]
    counts = np.bincount(known, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(known) / (max(int((counts > 0).sum()), 1) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


@dataclass
class BiasTarget:
    """A categorical bias column encoded as int codes per manifest row (−1 = missing)."""

    column: str
    classes: list[str]
    codes: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "classes": list(self.classes)}


def encode_bias(df: Any, column: str, train_rows: np.ndarray) -> BiasTarget:
    """Codes of ``df[column]`` per row; the classes are the values seen in the training rows (sorted; numbers
    numerically). Values only seen outside training are treated as missing. Needs >= 2 classes in training."""
    import pandas as pd

    if column not in df.columns:
        cand = [c for c in ("fitzpatrick", "fitzpatrick_est", "ita_category", "instrument", "sex") if c in df.columns]
        raise UsageError(f"--bias-col {column}: no such column in the manifest",
                         hint=("columns that could serve: " + ", ".join(cand)) if cand else
                         "add skin-tone columns with `lesionkit label-skintone MANIFEST` (fitzpatrick_est)")
    col = df[column]
    train_vals = col.iloc[train_rows].dropna()
    uniq = pd.unique(train_vals)
    try:
        ordered = sorted(uniq, key=lambda v: float(v))
    except (TypeError, ValueError):
        ordered = sorted(uniq, key=str)
    classes = [_label(v) for v in ordered]
    if len(classes) < 2:
        raise UsageError(f"--bias-col {column}: the training rows have {len(classes)} distinct value(s) "
                         f"({', '.join(classes) or 'none'}); a bias head needs at least 2",
                         hint="pick a column that varies in the training fold, or train without --debias")
    index = {c: k for k, c in enumerate(classes)}
    codes = np.array([-1 if pd.isna(v) else index.get(_label(v), -1) for v in col.tolist()], dtype=np.int64)
    return BiasTarget(column, classes, codes)


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def runaway_warning(aux_loss: float | None, n_classes: int, method: str) -> str | None:
    """A warning when the bias head's mean training loss is far above chance (``log K``): with a GRL the encoder
    maximises that unbounded cross-entropy and can win outright — the bias head's answers turn systematically
    wrong (the bias is still encoded, flipped) and the main task degrades. Observed on HAM10000 with CLGR at AdamW
    2e-3 (loss 8 → 34 over 4 epochs, main AUC 0.92 → 0.78). None when the loss is below ``2·log K + 1``."""
    if aux_loss is None or method == "tabe" or not aux_loss > 2.0 * math.log(n_classes) + 1.0:
        return None
    return (f"the bias head's training loss is {aux_loss:.2f} (chance: {math.log(n_classes):.2f}): the gradient "
            "reversal is overpowering the bias head, which now answers systematically wrong, and the main task "
            "usually degrades; use a smaller --grl-coef magnitude or --grl-schedule dann, a lower --lr, or "
            "--debias tabe (no GRL)")


class Debiaser:
    """The debiasing losses of one method; :meth:`loss` is called by the training step."""

    def __init__(self, method: str, weight: float, grl_coef: float, grl_schedule: str,
                 class_weights: torch.Tensor | None, use_grl: bool = True):
        if method not in METHODS[1:]:
            raise UsageError(f"--debias {method!r}: expected one of {', '.join(METHODS)}")
        self.method = method
        self.weight = float(weight)
        self.grl_coef = float(grl_coef)
        self.grl_schedule = grl_schedule
        self.use_grl = bool(use_grl) and method in ("lntl", "clgr")
        self.class_weights = class_weights

    def loss(self, aux_head: nn.Linear, feats: torch.Tensor, bias: torch.Tensor, main_loss: torch.Tensor,
             progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its detached parts (``aux_loss``, ``adv_loss``, ``bias_correct``, ``bias_n``).

        feats: the fused features [B, D] (the graph reaches the encoder); bias: int64 codes [B] (−1 = unknown,
        ignored by the classification term; every row counts for the entropy / confusion term)."""
        w, b = aux_head.weight, aux_head.bias
        frozen = F.linear(feats, w.detach(), None if b is None else b.detach())
        adv = negative_entropy(frozen) if self.method == "lntl" else uniform_confusion(frozen)
        if self.method == "tabe":
            routed = feats.detach()
        elif self.use_grl:
            routed = grad_reverse(feats, grl_coefficient(self.grl_coef, self.grl_schedule, progress))
        else:  # LNTL forced without GRL: the encoder learns to predict the bias (refused unless --force-no-grl)
            routed = feats
        logits = aux_head(routed).float()
        cw = None if self.class_weights is None else self.class_weights.to(logits.device)
        known = bias >= 0
        aux = F.cross_entropy(logits, bias.clamp_min(0), reduction="none")
        # the class-weighted mean over the rows with a known bias (= cross_entropy(weight=cw)); 0 when none is known
        wt = (cw[bias.clamp_min(0)] if cw is not None else torch.ones_like(aux)) * known
        aux = (aux * wt).sum() / wt.sum().clamp_min(1e-12)
        total = main_loss + self.weight * adv + aux
        with torch.no_grad():
            correct = ((logits.argmax(1) == bias) & known).sum()
        return total, {"aux_loss": aux.detach(), "adv_loss": adv.detach(), "bias_correct": correct,
                       "bias_n": known.sum()}
