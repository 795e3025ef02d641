"""What a model learns to predict: the training target resolved from a manifest.

``--target`` takes one of:

* ``label`` — the manifest's ``label`` column (Int16 index into the class list stored in the manifest).
  Always ``multiclass`` over ``Manifest.classes`` (also when there are two classes: use ``malignant`` or a
  0/1 column for a one-logit binary model).
* ``malignant`` — binary, classes ``["benign", "malignant"]``: the ``malignant`` column when the manifest has one
  with at least one value; otherwise derived from ``diagnosis`` (lower-cased, stripped) with
  :data:`MALIGNANT_DIAGNOSES` (HAM10000 / ISIC spellings: mel, bcc, scc, akiec and their long names); every
  other non-missing diagnosis is benign, a missing diagnosis stays missing.
* any other column — ``bool``/``boolean`` → binary with classes ``[f"not {col}", col]``; numeric with values in
  {0, 1} → binary with classes ``["0", "1"]``; other integer-valued numbers, strings and categoricals →
  multiclass over the values present (categorical: category order; otherwise sorted), classes as strings.
  Fractional numbers are refused (regression is not a target kind here).

The returned array is ``int64`` per manifest row: the class index, ``-1`` where the target is missing (rows that
training must drop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from lesionkit.errors import InputError, UsageError

if TYPE_CHECKING:
    from lesionkit.manifest.io import Manifest

__all__ = ["MALIGNANT_DIAGNOSES", "TargetSpec", "resolve_target", "target_choices"]

# Diagnoses counted as malignant when a manifest has no ``malignant`` column. akiec (HAM10000: actinic keratoses
# AND intraepithelial carcinoma / Bowen's disease) follows the HAM10000 / DermaMNIST convention; plain actinic
# keratosis ("ak", "ack") is pre-malignant and counted benign, as PAD-UFES-20 and ISIC 2019 binary tasks do.
MALIGNANT_DIAGNOSES = frozenset({
    "mel", "melanoma", "melanoma metastasis",
    "bcc", "basal cell carcinoma",
    "scc", "squamous cell carcinoma", "squamous cell carcinoma in situ",
    "akiec", "malignant",
})

MAX_CLASSES = 1000  # a "class" column with more distinct values than this is almost surely an id column


@dataclass
class TargetSpec:
    """A resolved target. ``name`` is what the user passed (``label``, ``malignant`` or a column), ``column`` the
    manifest column it was read from (``diagnosis`` when ``malignant`` was derived from it). Binary targets have
    two classes and are trained with one logit (index 1 = the positive class)."""

    name: str
    kind: Literal["multiclass", "binary"]
    classes: list[str]
    column: str
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def num_outputs(self) -> int:
        """Logits the model needs: 1 for binary, ``n_classes`` for multiclass."""
        return 1 if self.kind == "binary" else len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (for checkpoints and ``config.yaml``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetSpec:
        try:
            kind = d["kind"]
            if kind not in ("multiclass", "binary"):
                raise ValueError(f"kind {kind!r}")
            return cls(name=str(d["name"]), kind=kind, classes=[str(c) for c in d["classes"]],
                       column=str(d["column"]), notes=dict(d.get("notes") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"target record is malformed ({e}): {d!r}",
                             hint="the checkpoint was not written by `lesionkit train`; retrain") from None


def _is_bool(s: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(s.dtype)


def _is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype)


def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s.dtype) or s.dtype == object


def _eligible(s: pd.Series) -> bool:
    """Whether a column can serve as a target (cheap check used to list the choices in errors)."""
    v = s.dropna()
    if len(v) == 0:
        return False
    if _is_bool(s):
        return True
    if pd.api.types.is_numeric_dtype(s.dtype):
        f = pd.to_numeric(v, errors="coerce").astype("float64")
        return bool(np.all(np.mod(f, 1) == 0)) and 2 <= f.nunique() <= MAX_CLASSES
    if _is_categorical(s) or _is_text(s):
        return 2 <= v.astype("string").nunique() <= MAX_CLASSES
    return False


_NOT_TARGETS = {"sample_id", "image_path", "patient_id", "lesion_id", "source", "height", "width", "split"}


def target_choices(m: Manifest) -> list[str]:
    """Targets this manifest supports: ``label`` and ``malignant`` when available, then eligible columns."""
    df = m.df
    out = []
    if "label" in df.columns and df["label"].notna().any():
        out.append("label")
    if ("malignant" in df.columns and df["malignant"].notna().any()) or (
            "diagnosis" in df.columns and df["diagnosis"].notna().any()):
        out.append("malignant")
    for c in df.columns:
        if c in out or c in _NOT_TARGETS or str(c).endswith("_path"):
            continue
        if _eligible(df[c]):
            out.append(str(c))
    return out


def _from_label(m: Manifest) -> tuple[TargetSpec, np.ndarray]:
    lab = m.df["label"]
    if lab.notna().sum() == 0:
        raise InputError("the manifest's `label` column has no values (every row is unlabelled)",
                         hint=f"choose another --target: {', '.join(target_choices(m)) or '(none available)'}")
    if not m.classes:
        raise InputError("the manifest has labels but no class list in its metadata",
                         hint="rebuild it with `lesionkit manifest build`")
    y = pd.to_numeric(lab).astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    bad = (y < -1) | (y >= len(m.classes))
    if bad.any():
        raise InputError(f"`label` has {int(bad.sum())} values outside 0..{len(m.classes) - 1} "
                         f"(the manifest's {len(m.classes)} classes), e.g. {sorted(set(y[bad].tolist()))[:5]}",
                         hint="rebuild the manifest with `lesionkit manifest build`")
    return TargetSpec("label", "multiclass", list(m.classes), "label"), y


def _from_malignant(m: Manifest) -> tuple[TargetSpec, np.ndarray]:
    df = m.df
    if "malignant" in df.columns and df["malignant"].notna().any():
        v = pd.to_numeric(df["malignant"].astype("Float64"), errors="raise")
        present = v.dropna()
        if not present.isin([0, 1]).all():
            raise InputError(f"column `malignant` must hold 0/1 (found {sorted(present.unique().tolist())[:5]})",
                             hint="fix the importer output or pass --target label")
        y = v.fillna(-1).astype("int64").to_numpy()
        return TargetSpec("malignant", "binary", ["benign", "malignant"], "malignant"), y
    if "diagnosis" in df.columns and df["diagnosis"].notna().any():
        dx = df["diagnosis"].astype("string").str.strip().str.lower()
        y = np.where(dx.isna().to_numpy(), -1, dx.isin(sorted(MALIGNANT_DIAGNOSES)).fillna(False).to_numpy().astype(np.int64))
        found = sorted(set(dx.dropna()) & MALIGNANT_DIAGNOSES)
        return (TargetSpec("malignant", "binary", ["benign", "malignant"], "diagnosis",
                           notes={"derived": "diagnosis in MALIGNANT_DIAGNOSES", "malignant_diagnoses_found": found}),
                y.astype(np.int64))
    raise InputError("target `malignant` needs a `malignant` column or a `diagnosis` column with values; this manifest has neither",
                     hint=f"choose another --target: {', '.join(target_choices(m)) or '(none available)'}")


def _from_column(m: Manifest, col: str) -> tuple[TargetSpec, np.ndarray]:
    s = m.df[col]
    v = s.dropna()
    if len(v) == 0:
        raise InputError(f"target column `{col}` has no values", hint=f"choose another --target: {', '.join(target_choices(m))}")
    if _is_bool(s):
        y = s.astype("boolean").astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
        return TargetSpec(col, "binary", [f"not {col}", col], col), y
    if pd.api.types.is_numeric_dtype(s.dtype):
        f = pd.to_numeric(s, errors="raise").astype("Float64")
        fv = f.dropna().to_numpy(dtype=np.float64)
        if not np.all(np.mod(fv, 1) == 0):
            raise UsageError(f"target column `{col}` holds fractional numbers (e.g. {fv[np.mod(fv, 1) != 0][:3].tolist()}); "
                             "only class targets are supported",
                             hint=f"choose a class column: {', '.join(target_choices(m))}")
        uniq = np.unique(fv)
        if set(uniq.tolist()) <= {0.0, 1.0}:
            y = f.fillna(-1).astype("int64").to_numpy()
            return TargetSpec(col, "binary", ["0", "1"], col), y
        classes_num = uniq.astype(np.int64)
        index = {int(c): i for i, c in enumerate(classes_num)}
        y = np.array([-1 if pd.isna(x) else index[int(x)] for x in f], dtype=np.int64)
        return _check_n(TargetSpec(col, "multiclass", [str(int(c)) for c in classes_num], col), y, m)
    if _is_categorical(s):
        present = set(v.astype("string"))
        classes = [str(c) for c in s.cat.categories if str(c) in present]
    elif _is_text(s):
        classes = sorted(set(v.astype("string")))
    else:
        raise UsageError(f"target column `{col}` has dtype {s.dtype}, which is not a class column",
                         hint=f"choose one of: {', '.join(target_choices(m))}")
    index = {c: i for i, c in enumerate(classes)}
    st = s.astype("string")
    y = np.array([-1 if pd.isna(x) else index[str(x)] for x in st], dtype=np.int64)
    return _check_n(TargetSpec(col, "multiclass", classes, col), y, m)


def _check_n(spec: TargetSpec, y: np.ndarray, m: Manifest) -> tuple[TargetSpec, np.ndarray]:
    if len(spec.classes) < 2:
        raise InputError(f"target column `{spec.column}` has a single value ({spec.classes[0]!r}); a classifier needs two or more",
                         hint=f"choose another --target: {', '.join(target_choices(m))}")
    if len(spec.classes) > MAX_CLASSES:
        raise UsageError(f"target column `{spec.column}` has {len(spec.classes)} distinct values (more than {MAX_CLASSES}); "
                         "it looks like an id, not a class", hint=f"choose one of: {', '.join(target_choices(m))}")
    return spec, y


def resolve_target(m: Manifest, target: str) -> tuple[TargetSpec, np.ndarray]:
    """Resolve ``--target`` on manifest ``m``: the spec and an ``int64`` class index per row (``-1`` = missing).

    Raises :class:`UsageError` for an unknown column (listing the choices) and :class:`InputError` when the
    column exists but cannot serve (no values, one class, out-of-range labels)."""
    target = str(target).strip()
    if target == "label":
        if "label" not in m.df.columns:
            raise UsageError("the manifest has no `label` column", hint=f"choose one of: {', '.join(target_choices(m))}")
        return _from_label(m)
    if target == "malignant":
        return _from_malignant(m)
    if target not in m.df.columns:
        choices = target_choices(m)
        raise UsageError(f"--target {target!r}: no such column in the manifest",
                         hint=f"choose one of: {', '.join(choices) if choices else '(none: the manifest has no class columns)'}",
                         details=[f"choices: {', '.join(choices)}"])
    if target in _NOT_TARGETS or target.endswith("_path"):
        raise UsageError(f"--target {target!r} is an identifier/path column, not a class",
                         hint=f"choose one of: {', '.join(target_choices(m))}")
    return _from_column(m, target)
