"""Targets (label / malignant / columns) and the metadata encoder, against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lesionkit.data.meta import MetaEncoder, parse_meta_columns
from lesionkit.data.targets import TargetSpec, resolve_target, target_choices
from lesionkit.errors import InputError, UsageError
from lesionkit.manifest.io import Manifest
from lesionkit.manifest.schema import coerce


def manifest(**cols) -> Manifest:
    n = len(next(iter(cols.values())))
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "source": "t", "image_path": [f"/x/{i}.png" for i in range(n)], **cols})
    return Manifest(df=coerce(df), classes=["akiec", "bcc", "mel", "nv"])


# ----------------------------------------------------------------------------------------------- targets


def test_label_target_multiclass_with_missing():
    m = manifest(label=[0, 3, None, 2, 1])
    spec, y = resolve_target(m, "label")
    assert spec.kind == "multiclass" and spec.classes == ["akiec", "bcc", "mel", "nv"] and spec.column == "label"
    assert spec.num_outputs == 4
    assert y.dtype == np.int64 and y.tolist() == [0, 3, -1, 2, 1]


def test_label_out_of_range_is_an_input_error():
    m = manifest(label=[0, 7])
    with pytest.raises(InputError, match="outside 0..3"):
        resolve_target(m, "label")


def test_malignant_from_column_beats_diagnosis():
    m = manifest(label=[2, 3, 0], diagnosis=["mel", "nv", "akiec"], malignant=[1, 0, None])
    spec, y = resolve_target(m, "malignant")
    assert (spec.kind, spec.classes, spec.column, spec.num_outputs) == ("binary", ["benign", "malignant"], "malignant", 1)
    assert y.tolist() == [1, 0, -1]


def test_malignant_derived_from_diagnosis():
    m = manifest(diagnosis=["MEL", "nv", None, "bcc", "ak", "Squamous cell carcinoma", "seborrheic_keratosis", "akiec"])
    spec, y = resolve_target(m, "malignant")
    assert spec.column == "diagnosis" and spec.kind == "binary"
    # mel, bcc, scc, akiec are malignant; plain actinic keratosis (ak) and SK are benign; missing stays missing
    assert y.tolist() == [1, 0, -1, 1, 0, 1, 0, 1]
    assert set(spec.notes["malignant_diagnoses_found"]) == {"mel", "bcc", "squamous cell carcinoma", "akiec"}


def test_malignant_without_any_source_errors():
    m = manifest(label=[0, 1])
    with pytest.raises(InputError, match="malignant"):
        resolve_target(m, "malignant")


def test_bool_column_is_binary_named_after_column():
    m = manifest(ink=pd.array([True, False, None, True], dtype="boolean"))
    spec, y = resolve_target(m, "ink")
    assert spec.kind == "binary" and spec.classes == ["not ink", "ink"] and spec.column == "ink"
    assert y.tolist() == [1, 0, -1, 1]


def test_zero_one_int_column_is_binary():
    m = manifest(flag=pd.array([0, 1, 1, None], dtype="Int8"))
    spec, y = resolve_target(m, "flag")
    assert spec.kind == "binary" and spec.classes == ["0", "1"] and y.tolist() == [0, 1, 1, -1]


def test_integer_and_string_columns_are_multiclass():
    m = manifest(fitzpatrick=[3, 1, None, 6, 3], dataset=["b", "a", "c", None, "a"])
    spec, y = resolve_target(m, "fitzpatrick")
    assert spec.kind == "multiclass" and spec.classes == ["1", "3", "6"] and y.tolist() == [1, 0, -1, 2, 1]
    spec, y = resolve_target(m, "dataset")
    assert spec.classes == ["a", "b", "c"] and y.tolist() == [1, 0, 2, -1, 0]


def test_categorical_column_keeps_category_order_of_present_values():
    m = manifest(site=pd.Categorical(["torso", "face", "torso"], categories=["torso", "back", "face"]))
    spec, y = resolve_target(m, "site")
    assert spec.classes == ["torso", "face"] and y.tolist() == [0, 1, 0]


def test_unknown_column_lists_choices():
    m = manifest(label=[0, 1, 2], diagnosis=["mel", "nv", "bcc"], ink=pd.array([True, False, True], dtype="boolean"),
                 age_approx=[30.5, 40.0, 50.25])
    with pytest.raises(UsageError) as e:
        resolve_target(m, "nope")
    text = str(e.value)
    assert "'nope'" in text
    for choice in ("label", "malignant", "ink", "diagnosis"):
        assert choice in text
    assert "age_approx" not in target_choices(m)  # fractional numbers are not classes


def test_fractional_and_single_valued_columns_are_refused():
    m = manifest(age_approx=[30.5, 40.0, 50.25], const=["x", "x", "x"])
    with pytest.raises(UsageError, match="fractional"):
        resolve_target(m, "age_approx")
    with pytest.raises(InputError, match="single value"):
        resolve_target(m, "const")


def test_target_spec_round_trip():
    spec = TargetSpec("malignant", "binary", ["benign", "malignant"], "diagnosis", notes={"derived": "x"})
    d = json.loads(json.dumps(spec.to_dict()))
    assert TargetSpec.from_dict(d) == spec
    with pytest.raises(InputError):
        TargetSpec.from_dict({"name": "x", "kind": "regression", "classes": [], "column": "x"})


# ----------------------------------------------------------------------------------------------- metadata


def toy_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "age_approx": pd.array([30.0, None, 50.0, 40.0], dtype="Float32"),
        "sex": pd.Categorical(["male", None, "female", "male"], categories=["female", "male"]),
        "anatom_site": pd.array(["back", "face", None, "back"], dtype="string"),
    })


def test_meta_encoder_hand_computed():
    df = toy_frame()
    enc = MetaEncoder().fit(df, "age,sex,site")
    assert enc.dim == 2 + 3 + 3
    assert enc.feature_names() == ["age_approx", "age_approx=missing", "sex=female", "sex=male", "sex=missing/unknown",
                                   "anatom_site=back", "anatom_site=face", "anatom_site=missing/unknown"]
    sd = math.sqrt(200 / 3)  # population std of 30, 50, 40 (mean 40)
    expected = np.array([
        [-10 / sd, 0, 0, 1, 0, 1, 0, 0],
        [0, 1, 0, 0, 1, 0, 1, 0],
        [10 / sd, 0, 1, 0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0, 1, 0, 0],
    ], dtype=np.float32)
    out = enc.transform(df)
    assert out.dtype == np.float32 and out.shape == (4, 8)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_meta_encoder_unseen_category_goes_to_missing_and_round_trips():
    enc = MetaEncoder().fit(toy_frame(), ["age_approx", "sex", "anatom_site"])
    d = json.loads(json.dumps(enc.to_dict(), allow_nan=False))  # plain JSON types only
    enc2 = MetaEncoder.from_dict(d)
    new = pd.DataFrame({"age_approx": [60.0, float("nan")], "sex": ["female", "other"], "anatom_site": ["palms", "face"]})
    a, b = enc.transform(new), enc2.transform(new)
    np.testing.assert_array_equal(a, b)
    sd = math.sqrt(200 / 3)
    np.testing.assert_allclose(a[0], [20 / sd, 0, 1, 0, 0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(a[1], [0, 1, 0, 0, 1, 0, 1, 0], atol=1e-6)
    assert enc2.dim == enc.dim and enc2.feature_names() == enc.feature_names()


def test_meta_encoder_errors():
    with pytest.raises(UsageError, match="nope"):
        MetaEncoder().fit(toy_frame(), "age,nope")
    enc = MetaEncoder().fit(toy_frame(), "sex")
    with pytest.raises(InputError, match="sex"):
        enc.transform(pd.DataFrame({"age_approx": [1.0]}))
    with pytest.raises(InputError):
        MetaEncoder.from_dict({"version": 1, "columns": [{"name": "a", "kind": "weird"}]})


def test_meta_constant_column_and_aliases():
    assert parse_meta_columns("age, sex,site,age") == ["age_approx", "sex", "anatom_site"]
    df = pd.DataFrame({"age_approx": [50.0, 50.0, None]})
    out = MetaEncoder().fit_transform(df, "age")
    np.testing.assert_array_equal(out, [[0, 0], [0, 0], [0, 1]])
