"""Importers: real data when LESIONKIT_REAL_DATA is set, tiny hand-made datasets in tmp_path otherwise.

Errors are checked through the CLI (exit code + the message on stderr naming the problem); with click >= 8.2
``result.stderr`` holds what rich printed to stderr (``result.output`` holds stdout and stderr together).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lesionkit.errors import InputError, OutputExistsError, UsageError
from lesionkit.manifest import importers
from lesionkit.manifest.build import build_manifest
from lesionkit.manifest.importers import ImportOptions
from lesionkit.manifest.io import read_manifest
from lesionkit.manifest.schema import COLUMNS, dtype_matches
from tests.conftest import invoke, real_dataset

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


# ----------------------------------------------------------------------------------------------- helpers


def img(path: Path, size: tuple[int, int] = (8, 6), color: tuple[int, int, int] = (200, 120, 90)) -> Path:
    """A tiny image (width, height) = size; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build(runner, src: Path, fmt: str, out: Path, *extra: str):
    return invoke(runner, "manifest", "build", src, "--format", fmt, "--out", out, *extra)


def ok(result) -> None:
    assert result.exit_code == 0, result.output


def fails(result, code: int, *needles: str) -> str:
    """The build failed with ``code`` and stderr names every needle (no traceback)."""
    assert result.exit_code == code, result.output
    msg = result.stderr
    for n in needles:
        assert n in msg, f"{n!r} not in error output:\n{msg}"
    assert "Traceback" not in result.output
    return msg


def assert_contract(m, classes: list[str]) -> None:
    for name, col in COLUMNS.items():
        assert name in m.df.columns, name
        assert dtype_matches(m.df[name], col.dtype), (name, m.df[name].dtype, col.dtype)
    assert m.classes == classes
    lab = m.df["label"].dropna()
    assert lab.between(0, len(classes) - 1).all()
    assert m.df["sample_id"].is_unique


# ---- tiny datasets (one function per layout; each returns SOURCE)

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def make_ham(root: Path, rows: list[list[object]] | None = None, images: bool = True) -> Path:
    rows = rows or [
        ["HAM_0000001", "ISIC_0000001", "mel", "histo", 60, "male", "back"],
        ["HAM_0000001", "ISIC_0000002", "mel", "histo", 60, "male", "back"],
        ["HAM_0000002", "ISIC_0000003", "nv", "follow_up", "", "unknown", "unknown"],
        ["HAM_0000003", "ISIC_0000004", "bcc", "histo", 75, "female", "face"],
    ]
    csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    if images:
        for r in rows:
            img(root / "HAM10000_images_part_1" / f"{r[1]}.jpg")
    return root


ISIC2020_HEADER = ["image_name", "patient_id", "lesion_id", "sex", "age_approx", "anatom_site_general_challenge",
                   "diagnosis", "benign_malignant", "target"]


def make_isic2020(root: Path, rows: list[list[object]] | None = None) -> Path:
    rows = rows or [
        ["ISIC_2000001", "IP_1", "IL_1", "male", 45, "torso", "nevus", "benign", 0],
        ["ISIC_2000002", "IP_1", "IL_2", "male", 45, "", "melanoma", "malignant", 1],
        ["ISIC_2000003", "IP_2", "IL_3", "female", "", "head/neck", "unknown", "benign", 0],
    ]
    csv(root / "ISIC_2020_Training_GroundTruth_v2.csv", ISIC2020_HEADER, rows)
    return root


def make_isic2017(root: Path, gt: dict[str, list[list[object]]] | None = None, meta: bool = True, images: bool = True) -> Path:
    tok = {"train": "Training", "val": "Validation", "test": "Test_v2"}
    gt = gt or {
        "train": [["ISIC_0000001", "1.0", "0.0"], ["ISIC_0000002", "0.0", "1.0"], ["ISIC_0000003", "0.0", "0.0"]],
        "val": [["ISIC_0000011", "0.0", "0.0"], ["ISIC_0000012", "1.0", "0.0"]],
        "test": [["ISIC_0000021", "0.0", "1.0"]],
    }
    for split, rows in gt.items():
        csv(root / f"ISIC-2017_{tok[split]}_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"], rows)
        if meta and split != "test":  # like the real release: no test metadata
            ages = ["55", "unknown", "30"]
            sexes = ["female", "male", "unknown"]
            csv(root / f"ISIC-2017_{tok[split]}_Data_metadata.csv", ["image_id", "age_approximate", "sex"],
                [[r[0], ages[i % 3], sexes[i % 3]] for i, r in enumerate(rows)])
        if images:
            for r in rows:
                img(root / f"ISIC-2017_{tok[split]}_Data" / f"{r[0]}.jpg")
                img(root / f"ISIC-2017_{tok[split]}_Data" / f"{r[0]}_superpixels.png")
    return root


ONEHOT_2018 = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ONEHOT_2019 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def onehot_row(image: str, cls: str, columns: list[str]) -> list[object]:
    return [image, *("1.0" if c == cls else "0.0" for c in columns)]


def make_isic2018(root: Path, rows: list[list[object]] | None = None, images: bool = True) -> Path:
    rows = rows or [onehot_row(f"ISIC_00240{i:02d}", c, ONEHOT_2018) for i, c in enumerate(["NV", "MEL", "AKIEC", "VASC", "NV"])]
    csv(root / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", *ONEHOT_2018], rows)
    if images:
        for r in rows:
            img(root / "ISIC2018_Task3_Training_Input" / f"{r[0]}.jpg")
    return root


def make_isic2019(root: Path, rows: list[list[object]] | None = None, images: bool = True, metadata: bool = True) -> Path:
    rows = rows or [onehot_row(f"ISIC_00000{i:02d}", c, ONEHOT_2019) for i, c in enumerate(["NV", "SCC", "AK", "MEL", "DF"])]
    csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ONEHOT_2019], rows)
    if images:
        for i, r in enumerate(rows):  # the 2019 release has some images only as <id>_downsampled.jpg
            img(root / "ISIC_2019_Training_Input" / (f"{r[0]}_downsampled.jpg" if i % 2 else f"{r[0]}.jpg"))
    if metadata:
        csv(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
            [[r[0], 40 + 5 * i, "anterior torso" if i % 2 else "", f"BCN_{i // 2:07d}" if i < 4 else "", "female" if i % 2 else "male"]
             for i, r in enumerate(rows)])
    return root


F17K_HEADER = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
               "three_partition_label", "qc", "url", "url_alphanum"]


def make_f17k(root: Path, rows: list[list[object]] | None = None, images: bool = True) -> Path:
    rows = rows or [
        ["a" * 32, 3, 3, "psoriasis", "inflammatory", "non-neoplastic", "", "http://x/1.jpg", "httpx1jpg.jpg"],
        ["b" * 32, -1, 2, "melanoma", "malignant melanoma", "malignant", "1 Diagnostic", "http://x/2.jpg", "httpx2jpg.jpg"],
        ["c" * 32, 6, -1, "dermatofibroma", "benign dermal", "benign", "", "", "httpx3jpg.jpg"],
        ["d" * 32, 1, 1, "basal cell carcinoma", "malignant epidermal", "malignant", "", "http://x/4.jpg", "httpx4jpg.jpg"],
    ]
    csv(root / "fitzpatrick17k.csv", F17K_HEADER, rows)
    if images:
        for r in rows:
            img(root / "images" / f"{r[0]}.jpg")
    return root


PAD_HEADER = ["patient_id", "lesion_id", "smoke", "age", "gender", "fitspatrick", "region", "diameter_1", "diameter_2",
              "diagnostic", "img_id", "biopsed"]


def make_pad(root: Path, rows: list[list[object]] | None = None, images: bool = True) -> Path:
    rows = rows or [
        ["PAT_1", "10", "False", 55, "FEMALE", "3.0", "NECK", "6.0", "5.0", "BCC", "PAT_1_10_100.png", "True"],
        ["PAT_1", "11", "False", 55, "FEMALE", "3.0", "FACE", "4.0", "4.0", "ACK", "PAT_1_11_101.png", "True"],
        ["PAT_2", "20", "", 8, "", "", "ARM", "", "", "NEV", "PAT_2_20_200.png", "False"],
        ["PAT_3", "30", "True", 79, "MALE", "1.0", "CHEST", "15.0", "10.0", "MEL", "PAT_3_30_300.png", "True"],
    ]
    csv(root / "metadata.csv", PAD_HEADER, rows)
    if images:
        for i, r in enumerate(rows):
            img(root / f"imgs_part_{1 + i % 2}" / r[10])
    return root


def make_npz(path: Path, sizes: dict[str, int] | None = None, side: int = 28, drop: tuple[str, ...] = (),
             labels: dict[str, np.ndarray] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    sizes = sizes or {"train": 5, "val": 2, "test": 3}
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (labels or {}).get(split, (np.arange(n) % 7).reshape(n, 1))
    for k in drop:
        arrays.pop(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path, arrays


def make_folder(root: Path) -> Path:
    img(root / "nevus" / "a.jpg")
    img(root / "nevus" / "sub" / "b.PNG")
    img(root / "melanoma" / "c.jpeg", size=(10, 4))
    (root / "melanoma" / "notes.txt").write_text("not an image")
    img(root / "melanoma" / ".hidden.jpg")
    return root


# ---------------------------------------------------------------------------------------- registry


def test_registry_maps_every_importer_module():
    for name in ["ham10000", "isic2017", "isic2018", "isic2019", "isic2020", "fitzpatrick17k", "pad_ufes20", "dermamnist", "folder"]:
        mod = importers.get(name)
        assert callable(mod.build) and isinstance(mod.HELP, str) and mod.HELP
        assert hasattr(mod, "NAME") and hasattr(mod, "CLASSES")
    onehot = importers.get("isic2018")
    assert onehot is importers.get("isic2019")
    assert "AKIEC" in onehot.help_for("isic2018") and "UNK" in onehot.help_for("isic2019")


def test_unknown_format_exits_2_and_lists_valid(runner, tmp_path):
    r = build(runner, tmp_path, "ham1000", tmp_path / "m.parquet")
    fails(r, 2, "unknown --format 'ham1000'", "valid formats:", "ham10000", "isic2019", "pad_ufes20", "folder")
    assert not (tmp_path / "m.parquet").exists()


# ---------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_ham10000(runner, tmp_path):
    src = real_dataset("ham10000")
    out = tmp_path / "ham.parquet"
    ok(build(runner, src, "ham10000", out))
    m = read_manifest(out)
    df = m.df
    assert len(df) == 10015
    assert df["lesion_id"].nunique() == 7470
    assert df["diagnosis"].value_counts().to_dict() == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert df["image_path"].notna().all()
    assert m.image_paths().map(lambda p: Path(p).is_file()).all()
    assert int(df["malignant"].sum()) == 1113 + 514 + 327
    assert [m.classes[i] for i in df["label"].head(50)] == df["diagnosis"].head(50).astype(str).tolist()
    assert_contract(m, HAM_CLASSES)
    assert set(df["height"].unique()) == {150} and set(df["width"].unique()) == {200}


@pytest.mark.realdata
def test_real_isic2020_both_layouts(runner, tmp_path):
    src = real_dataset("isic2020")
    frames = {}
    for name in ["ISIC_2020_Training_GroundTruth_v2.csv", "train.csv"]:
        out = tmp_path / f"{name}.parquet"
        r = build(runner, src / name, "isic2020", out, "--allow-missing-images")
        ok(r)
        assert "33126 of 33126 images not found" in r.stderr
        m = read_manifest(out)
        assert len(m.df) == 33126
        assert m.df["patient_id"].nunique() == 2056
        assert int(m.df["malignant"].sum()) == 584
        assert m.df["image_path"].isna().all()
        assert_contract(m, ["benign", "malignant"])
        frames[name] = m.df
    v2, kaggle = frames.values()
    pd.testing.assert_series_equal(v2["sample_id"], kaggle["sample_id"])
    pd.testing.assert_series_equal(v2["label"], kaggle["label"])
    pd.testing.assert_series_equal(v2["patient_id"], kaggle["patient_id"])
    assert v2["lesion_id"].notna().all() and kaggle["lesion_id"].isna().all()


@pytest.mark.realdata
def test_real_isic2017(runner, tmp_path):
    src = real_dataset("isic2017")
    out = tmp_path / "i17.parquet"
    ok(build(runner, src, "isic2017", out))
    m = read_manifest(out)
    df = m.df
    assert_contract(m, ["melanoma", "nevus", "seborrheic_keratosis"])
    by = df.groupby("split", observed=True)
    assert by.size().to_dict() == {"train": 2000, "val": 150, "test": 600}
    counts = pd.crosstab(df["split"], df["diagnosis"])
    assert counts["melanoma"].to_dict() == {"test": 117, "train": 374, "val": 30}
    assert counts["seborrheic_keratosis"].to_dict() == {"test": 90, "train": 254, "val": 42}
    assert (df["malignant"] == (df["diagnosis"] == "melanoma").astype("Int8")).all()
    # the same numbers straight from the CSVs
    for split, tok in {"train": "Training", "val": "Validation", "test": "Test_v2"}.items():
        gt = pd.read_csv(src / f"ISIC-2017_{tok}_Part3_GroundTruth.csv")
        part = df[df["split"] == split].set_index("sample_id")
        assert set(part.index) == set(gt["image_id"])
        assert (part.loc[gt["image_id"], "diagnosis"].astype(str).to_numpy() == np.where(
            gt["melanoma"] == 1, "melanoma", np.where(gt["seborrheic_keratosis"] == 1, "seborrheic_keratosis", "nevus"))).all()
    # every image found, none of them a superpixel map
    assert df["image_path"].notna().all()
    assert not df["image_path"].str.contains("superpixels").any()
    assert m.image_paths().map(lambda p: Path(p).is_file()).all()
    # age "unknown" -> <NA>; the test split has no metadata file
    meta = pd.read_csv(src / "ISIC-2017_Training_Data_metadata.csv", dtype=str)
    train = df[df["split"] == "train"]
    assert int(train["age_approx"].isna().sum()) == int((meta["age_approximate"] == "unknown").sum()) == 256
    assert df.loc[df["split"] == "test", "age_approx"].isna().all()
    assert int(train["sex"].isna().sum()) == int((meta["sex"] == "unknown").sum())


@pytest.mark.realdata
def test_real_fitzpatrick17k(runner, tmp_path):
    src = real_dataset("fitzpatrick17k")
    raw = pd.read_csv(src / "fitzpatrick17k.csv", dtype=str)
    out = tmp_path / "f.parquet"
    r = build(runner, src, "fitzpatrick17k", tmp_path / "no.parquet")
    fails(r, 1, "16577 of 16577 images not found", "--allow-missing-images")
    ok(build(runner, src, "fitzpatrick17k", out, "--allow-missing-images"))
    m = read_manifest(out)
    df = m.df
    assert_contract(m, ["benign", "malignant", "non-neoplastic"])
    assert len(df) == len(raw) == 16577
    assert df["sample_id"].tolist() == raw["md5hash"].tolist()
    assert not (df["fitzpatrick"] == -1).any()
    assert int(df["fitzpatrick"].isna().sum()) == int((raw["fitzpatrick_scale"] == "-1").sum()) == 565
    assert int(df["fitzpatrick_centaur"].isna().sum()) == int((raw["fitzpatrick_centaur"] == "-1").sum()) == 1073
    assert str(df["fitzpatrick_centaur"].dtype) == "Int8"
    assert df["fitzpatrick"].dropna().between(1, 6).all()
    known = raw["fitzpatrick_scale"] != "-1"
    assert (df.loc[known, "fitzpatrick"].astype(int).to_numpy() == raw.loc[known, "fitzpatrick_scale"].astype(int).to_numpy()).all()
    assert int(df["malignant"].sum()) == int((raw["three_partition_label"] == "malignant").sum()) == 2263
    assert df["fine_label"].nunique() == 114
    out2 = tmp_path / "f_fine.parquet"
    ok(build(runner, src, "fitzpatrick17k", out2, "--allow-missing-images", "--label-from", "label"))
    fine = read_manifest(out2)
    assert len(fine.classes) == 114 and fine.classes == sorted(fine.classes)
    assert [fine.classes[i] for i in fine.df["label"]] == raw["label"].tolist()


@pytest.mark.realdata
def test_real_pad_ufes20(runner, tmp_path):
    src = real_dataset("pad_ufes20")
    raw = pd.read_csv(src / "metadata_rows.csv", dtype=str)
    # the shared sample has 9 metadata rows but only 7 photos
    fails(build(runner, src, "pad_ufes20", tmp_path / "no.parquet"), 1, "2 of 9 images not found", "PAT_1989_4061_934")
    out = tmp_path / "pad.parquet"
    ok(build(runner, src, "pad_ufes20", out, "--allow-missing-images"))
    m = read_manifest(out)
    df = m.df.set_index("sample_id")
    assert_contract(m, ["ack", "bcc", "mel", "nev", "scc", "sek"])
    assert len(df) == len(raw) == 9
    assert int(df["image_path"].notna().sum()) == 7 == len(list((src / "images").glob("*.png")))
    assert int(df["fitzpatrick"].notna().sum()) == int(raw["fitspatrick"].notna().sum()) == 4
    assert df.loc["PAT_46_881_939", "fitzpatrick"] == 3 and df.loc["PAT_684_1302_588", "fitzpatrick"] == 1
    assert df.loc["PAT_46_881_939", "sex"] == "female" and df.loc["PAT_46_881_939", "anatom_site"] == "neck"
    assert df.loc["PAT_46_881_939", "lesion_id"] == "881" and df.loc["PAT_46_881_939", "patient_id"] == "PAT_46"
    assert df.loc["PAT_46_881_939", "height"] > 100
    assert df["diagnosis"].value_counts().to_dict() == raw["diagnostic"].str.lower().value_counts().to_dict()
    assert int(df["malignant"].sum()) == int(raw["diagnostic"].isin(["BCC", "MEL", "SCC"]).sum())
    assert (df.loc[df["diagnosis"] == "ack", "malignant"] == 0).all()
    assert df["biopsed"].tolist() == (raw["biopsed"] == "True").tolist()


# ---------------------------------------------------------------------------------------- tiny fixtures


def test_ham10000_fixture(runner, tmp_path):
    src = make_ham(tmp_path / "ham")
    out = tmp_path / "out" / "ham.parquet"
    ok(build(runner, src, "ham10000", out))
    m = read_manifest(out)
    assert_contract(m, HAM_CLASSES)
    df = m.df.set_index("sample_id")
    assert df["label"].tolist() == [4, 4, 5, 1]
    assert df["malignant"].tolist() == [1, 1, 0, 1]
    assert df.loc["ISIC_0000003", ["age_approx", "sex", "anatom_site"]].isna().all()
    assert df["lesion_id"].nunique() == 3
    assert (df["height"] == 6).all() and (df["width"] == 8).all()


def test_isic2020_fixture(runner, tmp_path):
    src = make_isic2020(tmp_path / "i20")
    fails(build(runner, src, "isic2020", tmp_path / "a.parquet"), 1, "3 of 3 images not found", "ISIC_2000001")
    img(src / "train" / "ISIC_2000002.jpg")
    out = tmp_path / "b.parquet"
    ok(build(runner, src, "isic2020", out, "--allow-missing-images"))
    m = read_manifest(out)
    assert_contract(m, ["benign", "malignant"])
    assert m.df["image_path"].notna().tolist() == [False, True, False]
    assert m.df["label"].tolist() == [0, 1, 0] and m.df["patient_id"].tolist() == ["IP_1", "IP_1", "IP_2"]


def test_isic2017_fixture(runner, tmp_path):
    src = make_isic2017(tmp_path / "i17")
    out = tmp_path / "i17.parquet"
    ok(build(runner, src, "isic2017", out))
    m = read_manifest(out)
    assert_contract(m, ["melanoma", "nevus", "seborrheic_keratosis"])
    df = m.df.set_index("sample_id")
    assert df["split"].astype(str).tolist() == ["train"] * 3 + ["val"] * 2 + ["test"]
    assert df["diagnosis"].astype(str).tolist() == ["melanoma", "seborrheic_keratosis", "nevus", "nevus", "melanoma", "seborrheic_keratosis"]
    assert df["label"].tolist() == [0, 2, 1, 1, 0, 2]
    assert df["malignant"].tolist() == [1, 0, 0, 0, 1, 0]
    assert df.loc["ISIC_0000001", "age_approx"] == 55 and pd.isna(df.loc["ISIC_0000002", "age_approx"])  # "unknown"
    assert df.loc["ISIC_0000002", "sex"] == "male" and pd.isna(df.loc["ISIC_0000003", "sex"])
    assert pd.isna(df.loc["ISIC_0000021", "age_approx"])  # no test metadata
    assert df["image_path"].str.endswith(".jpg").all()  # never the *_superpixels.png


def test_isic2017_only_some_splits_and_no_metadata(runner, tmp_path):
    src = make_isic2017(tmp_path / "i17", gt={"train": [["ISIC_0000001", "0.0", "0.0"]]}, meta=False)
    out = tmp_path / "i17.parquet"
    r = build(runner, src, "isic2017", out)
    ok(r)
    assert "train only" in r.stderr
    m = read_manifest(out)
    assert len(m.df) == 1 and m.df["age_approx"].isna().all() and m.df["sex"].isna().all()


def test_isic2017_both_flags_is_an_error(runner, tmp_path):
    src = make_isic2017(tmp_path / "i17", gt={"val": [["ISIC_1", "0.0", "0.0"], ["ISIC_2", "1.0", "1.0"], ["ISIC_3", "1.0", "1.0"]]})
    out = tmp_path / "o" / "i17.parquet"
    fails(build(runner, src, "isic2017", out), 1, "ISIC-2017_Validation_Part3_GroundTruth.csv", "2 image(s)",
          "both melanoma and seborrheic_keratosis", "ISIC_2, ISIC_3")
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_isic2017_non_binary_flag(runner, tmp_path):
    src = make_isic2017(tmp_path / "i17", gt={"train": [["ISIC_1", "0.5", "0.0"], ["ISIC_2", "", "0.0"]]})
    fails(build(runner, src, "isic2017", tmp_path / "o.parquet"), 1, "column melanoma must be 0 or 1", "2 row(s)", "'0.5'", "ISIC_1")


def test_isic2017_source_must_be_folder_with_ground_truth(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    fails(build(runner, tmp_path / "empty", "isic2017", tmp_path / "o.parquet"), 1, "no ISIC 2017 Part 3 ground truth",
          "ISIC-2017_Training_Part3_GroundTruth.csv")
    src = make_isic2017(tmp_path / "i17")
    fails(build(runner, src / "ISIC-2017_Training_Part3_GroundTruth.csv", "isic2017", tmp_path / "o.parquet"), 1,
          "SOURCE must be a folder")


def test_isic2018_fixture(runner, tmp_path):
    src = make_isic2018(tmp_path / "i18")
    out = tmp_path / "i18.parquet"
    ok(build(runner, src, "isic2018", out))
    m = read_manifest(out)
    assert_contract(m, ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"])  # file order, lowercased
    assert m.df["diagnosis"].astype(str).tolist() == ["nv", "mel", "akiec", "vasc", "nv"]
    assert m.df["label"].tolist() == [1, 0, 3, 6, 1]
    assert m.df["malignant"].tolist() == [0, 1, 1, 0, 0]
    assert (m.df["split"] == "train").all()
    assert (m.df["source"] == "isic2018").all()
    assert m.df["image_path"].notna().all()


def test_isic2019_fixture_metadata_downsampled_and_unk_dropped(runner, tmp_path):
    src = make_isic2019(tmp_path / "i19")
    out = tmp_path / "i19.parquet"
    r = build(runner, src / "ISIC_2019_Training_GroundTruth.csv", "isic2019", out)
    ok(r)
    m = read_manifest(out)
    assert_contract(m, ["mel", "nv", "bcc", "ak", "bkl", "df", "vasc", "scc"])  # no UNK row -> no unk class
    df = m.df
    assert df["diagnosis"].astype(str).tolist() == ["nv", "scc", "ak", "mel", "df"]
    assert df["malignant"].tolist() == [0, 1, 1, 1, 0]
    assert df["image_path"].notna().all()
    assert df["image_path"].str.endswith("_downsampled.jpg").tolist() == [False, True, False, True, False]
    assert df["sample_id"].tolist() == [f"ISIC_00000{i:02d}" for i in range(5)]
    # metadata (found beside the CSV) joined on image
    assert df["age_approx"].tolist() == [40, 45, 50, 55, 60]
    assert df["sex"].astype(str).tolist() == ["male", "female", "male", "female", "male"]
    assert df["lesion_id"].tolist()[:4] == ["BCN_0000000", "BCN_0000000", "BCN_0000001", "BCN_0000001"]
    assert pd.isna(df["lesion_id"].iloc[4]) and pd.isna(df["anatom_site"].iloc[0])
    assert df["anatom_site"].iloc[1] == "anterior torso"


def test_isic2019_unk_kept_when_used_and_explicit_metadata(runner, tmp_path):
    rows = [onehot_row("ISIC_1", "UNK", ONEHOT_2019), onehot_row("ISIC_2", "BCC", ONEHOT_2019)]
    src = make_isic2019(tmp_path / "i19", rows=rows, metadata=False)
    csv(tmp_path / "meta.csv", ["image", "age_approx", "sex"], [["ISIC_2", 70, "male"], ["ISIC_9", 1, "female"]])
    out = tmp_path / "i19.parquet"
    ok(build(runner, src, "isic2019", out, "--metadata", tmp_path / "meta.csv"))
    m = read_manifest(out)
    assert m.classes[-1] == "unk" and len(m.classes) == 9
    assert m.df["label"].tolist() == [8, 2]
    assert pd.isna(m.df["malignant"].iloc[0]) and m.df["malignant"].iloc[1] == 1  # unk: unknown, not benign
    assert pd.isna(m.df["age_approx"].iloc[0]) and m.df["age_approx"].iloc[1] == 70


def test_isic2018_official_zip_layout_with_lesion_groupings(runner, tmp_path):
    rows = [onehot_row("ISIC_0024306", "NV", ONEHOT_2018), onehot_row("ISIC_0024307", "BCC", ONEHOT_2018)]
    gt = tmp_path / "ISIC2018_Task3_Training_GroundTruth"
    csv(gt / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", *ONEHOT_2018], rows)
    csv(gt / "ISIC2018_Task3_Training_LesionGroupings.csv", ["image", "lesion_id", "diagnosis_confirm_type"],
        [["ISIC_0024306", "HAM_0000118", "follow_up"], ["ISIC_0024307", "HAM_0000118", "histopathology"]])
    for r in rows:
        img(tmp_path / "ISIC2018_Task3_Training_Input" / f"{r[0]}.jpg")
    out = tmp_path / "o.parquet"
    r = build(runner, tmp_path, "isic2018", out)
    ok(r)
    assert "LesionGroupings" in r.stderr  # says which metadata file it picked up
    m = read_manifest(out)
    assert m.df["lesion_id"].tolist() == ["HAM_0000118"] * 2
    assert m.df["dx_type"].tolist() == ["follow_up", "histopathology"]
    assert m.df["image_path"].str.contains("ISIC2018_Task3_Training_Input").all()
    assert m.extra["notes"]["group_by"] == "lesion_id"


def test_onehot_rows_must_have_exactly_one_class(runner, tmp_path):
    rows = [onehot_row("ISIC_1", "MEL", ONEHOT_2018), ["ISIC_2", *["0.0"] * 7], ["ISIC_3", "1.0", "1.0", *["0.0"] * 5]]
    src = make_isic2018(tmp_path / "i18", rows=rows)
    fails(build(runner, src, "isic2018", tmp_path / "o.parquet"), 1, "2 row(s) do not have exactly one class set",
          "ISIC_2, ISIC_3", "1 row(s) with 0", "1 row(s) with 2")
    rows = [onehot_row("ISIC_1", "MEL", ONEHOT_2018), ["ISIC_2", "0.7", "0.3", *["0.0"] * 5]]
    src = make_isic2018(tmp_path / "soft", rows=rows)
    fails(build(runner, src, "isic2018", tmp_path / "o.parquet"), 1, "must hold 0 or 1", "ISIC_2", "'0.7'")


def test_isic2019_csv_with_isic2018_format_names_missing_columns(runner, tmp_path):
    src = make_isic2019(tmp_path / "i19")
    fails(build(runner, src / "ISIC_2019_Training_GroundTruth.csv", "isic2018", tmp_path / "o.parquet"), 1,
          "missing column(s) AKIEC", "expected: image, MEL", "found:    image, MEL, NV, BCC, AK")


def test_onehot_metadata_that_matches_nothing(runner, tmp_path):
    src = make_isic2019(tmp_path / "i19", metadata=False)
    csv(tmp_path / "meta.csv", ["image", "age_approx"], [["OTHER_1", 3]])
    fails(build(runner, src, "isic2019", tmp_path / "o.parquet", "--metadata", tmp_path / "meta.csv"), 1,
          "none of its image values match")
    csv(tmp_path / "meta2.csv", ["image", "foo"], [["ISIC_0000000", 3]])
    fails(build(runner, src, "isic2019", tmp_path / "o.parquet", "--metadata", tmp_path / "meta2.csv"), 1,
          "missing column(s)", "expected: image, age_approx", "found:    image, foo")


def test_fitzpatrick17k_fixture(runner, tmp_path):
    src = make_f17k(tmp_path / "f")
    out = tmp_path / "f.parquet"
    ok(build(runner, src, "fitzpatrick17k", out))
    m = read_manifest(out)
    assert_contract(m, ["benign", "malignant", "non-neoplastic"])
    df = m.df
    assert df["fitzpatrick"].tolist()[0] == 3 and pd.isna(df["fitzpatrick"].iloc[1])
    assert df["fitzpatrick"].iloc[2] == 6
    assert not (df["fitzpatrick"] == -1).any() and not (df["fitzpatrick_centaur"] == -1).any()
    assert str(df["fitzpatrick_centaur"].dtype) == "Int8" and pd.isna(df["fitzpatrick_centaur"].iloc[2])
    assert df["malignant"].tolist() == [0, 1, 0, 1]
    assert df["label"].tolist() == [2, 1, 0, 1]
    assert df["fine_label"].tolist() == ["psoriasis", "melanoma", "dermatofibroma", "basal cell carcinoma"]
    assert df["nine_partition_label"].iloc[1] == "malignant melanoma" and df["qc"].iloc[1] == "1 Diagnostic"
    assert df["diagnosis"].astype(str).tolist() == df["fine_label"].tolist()
    assert df["image_path"].notna().all()
    for col, expected in [("label", ["basal cell carcinoma", "dermatofibroma", "melanoma", "psoriasis"]),
                          ("nine_partition_label", ["benign dermal", "inflammatory", "malignant epidermal", "malignant melanoma"])]:
        o = tmp_path / f"{col}.parquet"
        ok(build(runner, src, "fitzpatrick17k", o, "--label-from", col))
        mm = read_manifest(o)
        assert mm.classes == expected
        assert mm.df["malignant"].tolist() == [0, 1, 0, 1]  # always from three_partition_label


def test_fitzpatrick17k_bad_label_from_and_values(runner, tmp_path):
    src = make_f17k(tmp_path / "f")
    fails(build(runner, src, "fitzpatrick17k", tmp_path / "o.parquet", "--label-from", "dx"), 2,
          "--label-from 'dx'", "label, nine_partition_label, three_partition_label")
    rows = [["a" * 32, 7, 3, "x", "inflammatory", "non-neoplastic", "", "", ""],
            ["b" * 32, 0, 3, "x", "inflammatory", "non-neoplastic", "", "", ""]]
    src = make_f17k(tmp_path / "bad", rows=rows)
    fails(build(runner, src, "fitzpatrick17k", tmp_path / "o.parquet"), 1, "fitzpatrick_scale must be a Fitzpatrick type 1..6",
          "'7' (1 rows)", "'0' (1 rows)", "a" * 32)


def test_fitzpatrick17k_without_images(runner, tmp_path):
    src = make_f17k(tmp_path / "f", images=False)
    fails(build(runner, src / "fitzpatrick17k.csv", "fitzpatrick17k", tmp_path / "o.parquet"), 1,
          "4 of 4 images not found", "a" * 32)
    out = tmp_path / "meta_only.parquet"
    ok(build(runner, src, "fitzpatrick17k", out, "--allow-missing-images"))
    assert read_manifest(out).df["image_path"].isna().all()
    img(tmp_path / "elsewhere" / f"{'c' * 32}.jpg")
    out = tmp_path / "some.parquet"
    ok(build(runner, src, "fitzpatrick17k", out, "--allow-missing-images", "--images", tmp_path / "elsewhere"))
    assert read_manifest(out).df["image_path"].notna().tolist() == [False, False, True, False]


def test_pad_ufes20_fixture(runner, tmp_path):
    src = make_pad(tmp_path / "pad")
    out = tmp_path / "pad.parquet"
    ok(build(runner, src, "pad_ufes20", out))
    m = read_manifest(out)
    assert_contract(m, ["ack", "bcc", "mel", "nev", "scc", "sek"])
    df = m.df
    assert df["sample_id"].tolist() == ["PAT_1_10_100", "PAT_1_11_101", "PAT_2_20_200", "PAT_3_30_300"]
    assert df["label"].tolist() == [1, 0, 3, 2]
    assert df["malignant"].tolist() == [1, 0, 0, 1]  # ack is precancerous -> 0
    assert df["fitzpatrick"].tolist()[:2] == [3, 3] and pd.isna(df["fitzpatrick"].iloc[2]) and df["fitzpatrick"].iloc[3] == 1
    assert df["lesion_id"].tolist() == ["10", "11", "20", "30"] and df["patient_id"].nunique() == 3
    assert df["sex"].astype(str).tolist()[:2] == ["female", "female"] and pd.isna(df["sex"].iloc[2])
    assert df["anatom_site"].astype(str).tolist() == ["neck", "face", "arm", "chest"]
    assert df["age_approx"].tolist() == [55, 55, 8, 79]
    assert df["biopsed"].tolist() == [True, True, False, True]
    assert df["diameter_1"].iloc[3] == 15 and pd.isna(df["diameter_2"].iloc[2])
    assert df["image_path"].str.contains("imgs_part_").all()


def test_pad_ufes20_bad_fitzpatrick(runner, tmp_path):
    rows = [["PAT_1", "10", "", 55, "FEMALE", "2.5", "NECK", "", "", "BCC", "PAT_1_10_100.png", "True"]]
    src = make_pad(tmp_path / "pad", rows=rows)
    fails(build(runner, src, "pad_ufes20", tmp_path / "o.parquet"), 1, "fitspatrick must be a Fitzpatrick type", "'2.5'")


def test_dermamnist_fixture(runner, tmp_path):
    npz, arrays = make_npz(tmp_path / "in" / "dermamnist.npz")
    out = tmp_path / "out" / "dm.parquet"
    ok(build(runner, npz, "dermamnist", out))
    m = read_manifest(out)
    assert_contract(m, HAM_CLASSES)
    df = m.df
    assert df["sample_id"].tolist()[:2] == ["dermamnist_train_00000", "dermamnist_train_00001"]
    assert df["sample_id"].iloc[-1] == "dermamnist_test_00002"
    assert df.groupby("split", observed=True).size().to_dict() == {"train": 5, "val": 2, "test": 3}
    assert df["label"].tolist() == [0, 1, 2, 3, 4, 0, 1, 0, 1, 2]
    assert df["malignant"].tolist() == [1, 1, 0, 0, 1, 1, 1, 1, 1, 0]
    assert (df["height"] == 28).all() and (df["width"] == 28).all()
    folder = tmp_path / "out" / "dm_images"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.png" for s in df["sample_id"])
    on_disk = pq.read_table(out).column("image_path").to_pylist()
    assert not any(p.startswith("/") for p in on_disk)  # inside the manifest's folder -> stored relative
    # PNGs hold the RGB pixels exactly (cv2 writes BGR: the channel swap must be undone)
    paths = m.image_paths()
    for i, (split, k) in enumerate([("train", 0), ("train", 4), ("val", 1), ("test", 2)]):
        row = df.index[df["sample_id"] == f"dermamnist_{split}_{k:05d}"][0]
        got = np.asarray(Image.open(paths[row]).convert("RGB"))
        np.testing.assert_array_equal(got, arrays[f"{split}_images"][k])


def test_dermamnist_image_folder_guard_and_overwrite(runner, tmp_path):
    npz, _ = make_npz(tmp_path / "dermamnist.npz")
    out = tmp_path / "out" / "dm.parquet"
    folder = tmp_path / "out" / "dm_images"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("user file")
    fails(build(runner, npz, "dermamnist", out), 1, "image folder exists", "dm_images", "does not")
    assert (folder / "keep.txt").exists() and not out.exists()
    folder.joinpath("keep.txt").unlink()
    folder.rmdir()
    ok(build(runner, npz, "dermamnist", out))
    fails(build(runner, npz, "dermamnist", out), 1, "output exists")
    make_npz(npz, sizes={"train": 2, "val": 1, "test": 1}, side=32)
    ok(build(runner, npz, "dermamnist", out, "--overwrite"))
    assert len(list(folder.iterdir())) == 4
    assert read_manifest(out).df["height"].tolist() == [32] * 4
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_dermamnist_bad_npz(runner, tmp_path):
    npz, _ = make_npz(tmp_path / "dermamnist.npz", drop=("val_labels", "test_images"))
    out = tmp_path / "out" / "dm.parquet"
    fails(build(runner, npz, "dermamnist", out), 1, "lacks array(s) val_labels, test_images",
          "expected: train_images, train_labels, val_images, val_labels, test_images, test_labels",
          "found:    train_images, train_labels, val_images, test_labels")
    npz, _ = make_npz(tmp_path / "d2.npz", labels={"val": np.array([[0], [9]])})
    fails(build(runner, npz, "dermamnist", out), 1, "val_labels has 1 value(s) outside 0..6", "[9]")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    fails(build(runner, tmp_path / "junk.npz", "dermamnist", out), 1, "not a readable .npz")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_folder_fixture(runner, tmp_path):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "f.parquet"
    ok(build(runner, src, "folder", out))
    m = read_manifest(out)
    assert_contract(m, ["melanoma", "nevus"])
    df = m.df
    assert df["sample_id"].tolist() == ["melanoma/c", "nevus/a", "nevus/sub/b"]
    assert df["label"].tolist() == [0, 1, 1]
    assert df["diagnosis"].astype(str).tolist() == ["melanoma", "nevus", "nevus"]
    assert df["malignant"].isna().all()
    assert df["height"].tolist() == [4, 6, 6] and df["width"].tolist() == [10, 8, 8]


def test_folder_errors(runner, tmp_path):
    flat = tmp_path / "flat"
    img(flat / "a.jpg")
    fails(build(runner, flat, "folder", tmp_path / "o.parquet"), 1, "has no sub-folders", "1 image(s) directly inside",
          "one sub-folder per class")
    src = make_folder(tmp_path / "imgs")
    (src / "vasc").mkdir()
    (src / "bcc" / "deeper").mkdir(parents=True)
    (src / "bcc" / "deeper" / "readme.txt").write_text("x")
    fails(build(runner, src, "folder", tmp_path / "o.parquet"), 1, "2 class folder(s)", "hold no images: bcc, vasc")
    dup = tmp_path / "dup"
    img(dup / "mel" / "x.jpg")
    img(dup / "mel" / "x.png")
    fails(build(runner, dup, "folder", tmp_path / "o.parquet"), 1, "differ only by extension", "mel/x.jpg", "mel/x.png")
    fails(build(runner, tmp_path / "nope", "folder", tmp_path / "o.parquet"), 1, "source not found")
    assert not (tmp_path / "o.parquet").exists()


# ---------------------------------------------------------------------------------------- bad inputs via the CLI

# format -> (make(root) -> SOURCE, the CSV inside SOURCE, the id column, required columns checked)
LAYOUTS = {
    "ham10000": (make_ham, "HAM10000_metadata.csv", "image_id"),
    "isic2020": (make_isic2020, "ISIC_2020_Training_GroundTruth_v2.csv", "image_name"),
    "isic2017": (make_isic2017, "ISIC-2017_Training_Part3_GroundTruth.csv", "image_id"),
    "isic2018": (make_isic2018, "ISIC2018_Task3_Training_GroundTruth.csv", "image"),
    "isic2019": (make_isic2019, "ISIC_2019_Training_GroundTruth.csv", "image"),
    "fitzpatrick17k": (make_f17k, "fitzpatrick17k.csv", "md5hash"),
    "pad_ufes20": (make_pad, "metadata.csv", "img_id"),
}


def _rewrite(path: Path, fn) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_missing_columns_lists_expected_and_found(runner, tmp_path, fmt):
    make, name, idcol = LAYOUTS[fmt]
    src = make(tmp_path / "src")
    drop = {"ham10000": "dx", "isic2020": "target", "isic2017": "melanoma", "isic2018": "MEL", "isic2019": "MEL",
            "fitzpatrick17k": "fitzpatrick_scale", "pad_ufes20": "diagnostic"}[fmt]
    _rewrite(src / name, lambda d: d.drop(columns=[drop]))
    out = tmp_path / "out" / "m.parquet"
    msg = fails(build(runner, src, fmt, out), 1, f"missing column(s) {drop}", "expected:", "found:", idcol)
    found_line = next(line for line in msg.splitlines() if "found:" in line)
    assert drop not in found_line.split("found:")[1].split(", ")
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_non_utf8_csv(runner, tmp_path, fmt):
    make, name, _ = LAYOUTS[fmt]
    src = make(tmp_path / "src")
    path = src / name
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b",", "é,".encode("latin-1"), 1)  # a latin-1 byte (0xe9) in the first data row
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "m.parquet"
    fails(build(runner, src, fmt, out), 1, "is not UTF-8", "b'\\xe9'", "iconv")
    assert not out.exists()


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_duplicate_ids(runner, tmp_path, fmt):
    make, name, idcol = LAYOUTS[fmt]
    src = make(tmp_path / "src")
    dup_id = {}

    def dup(d):
        dup_id["v"] = d[idcol].iloc[0]
        return pd.concat([d, d.iloc[[0]]], ignore_index=True)

    _rewrite(src / name, dup)
    out = tmp_path / "m.parquet"
    fails(build(runner, src, fmt, out), 1, "appear more than once", dup_id["v"], idcol)
    assert not out.exists()


def test_duplicate_id_across_isic2017_splits(runner, tmp_path):
    src = make_isic2017(tmp_path / "src", gt={"train": [["ISIC_1", "0.0", "0.0"]], "test": [["ISIC_1", "1.0", "0.0"]]})
    fails(build(runner, src, "isic2017", tmp_path / "m.parquet"), 1, "across the split files", "ISIC_1")


@pytest.mark.parametrize(("fmt", "column", "value"), [("ham10000", "dx", "melanocytic"), ("pad_ufes20", "diagnostic", "XYZ")])
def test_labels_outside_class_list(runner, tmp_path, fmt, column, value):
    make, name, _ = LAYOUTS[fmt]
    src = make(tmp_path / "src")

    def bad(d):
        d.loc[1, column] = value
        return d

    _rewrite(src / name, bad)
    out = tmp_path / "m.parquet"
    fails(build(runner, src, fmt, out), 1, "outside the class list", repr(value.lower()), "(1 rows)", "class list:")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["ham10000", "isic2017", "isic2018", "isic2019", "fitzpatrick17k", "pad_ufes20"])
def test_missing_images_without_flag(runner, tmp_path, fmt):
    make, _, _ = LAYOUTS[fmt]
    src = make(tmp_path / "src")
    victims = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png") and "superpixels" not in p.name)
    n = len(victims)
    for p in victims[:2]:
        p.unlink()
    gone = victims[0].stem.removesuffix("_downsampled")
    out = tmp_path / "m.parquet"
    fails(build(runner, src, fmt, out), 1, f"2 of {n} images not found", gone, "--allow-missing-images")
    assert not out.exists()
    ok(build(runner, src, fmt, out, "--allow-missing-images"))
    assert int(read_manifest(out).df["image_path"].isna().sum()) == 2


def test_output_exists_without_overwrite(runner, tmp_path):
    src = make_ham(tmp_path / "src")
    out = tmp_path / "m.parquet"
    out.write_bytes(b"precious")
    fails(build(runner, src, "ham10000", out), 1, "output exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    ok(build(runner, src, "ham10000", out, "--overwrite"))
    assert len(read_manifest(out).df) == 4


def test_failed_build_leaves_no_output_file(runner, tmp_path):
    src = make_ham(tmp_path / "src")
    _rewrite(src / "HAM10000_metadata.csv", lambda d: d.assign(dx=d["dx"].where(d.index != 2, "nope")))
    outdir = tmp_path / "out"
    outdir.mkdir()
    fails(build(runner, src, "ham10000", outdir / "m.parquet"), 1, "'nope'")
    assert list(outdir.iterdir()) == []  # no manifest, no temporary file


# ---------------------------------------------------------------------------------------- library level


@pytest.mark.parametrize(
    ("fmt", "make", "classes"),
    [
        ("ham10000", make_ham, HAM_CLASSES),
        ("isic2017", make_isic2017, ["melanoma", "nevus", "seborrheic_keratosis"]),
        ("isic2018", make_isic2018, ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]),
        ("isic2019", make_isic2019, ["mel", "nv", "bcc", "ak", "bkl", "df", "vasc", "scc"]),
        ("fitzpatrick17k", make_f17k, ["benign", "malignant", "non-neoplastic"]),
        ("pad_ufes20", make_pad, ["ack", "bcc", "mel", "nev", "scc", "sek"]),
        ("folder", make_folder, ["melanoma", "nevus"]),
        ("dermamnist", lambda p: make_npz(p / "dermamnist.npz")[0], HAM_CLASSES),
    ],
)
def test_round_trip_contract(tmp_path, fmt, make, classes):
    src = make(tmp_path / "src")
    out = tmp_path / "m.parquet"
    built = build_manifest(ImportOptions(format=fmt, source=src, out=out))
    m = read_manifest(out)
    assert_contract(m, classes)
    assert m.extra["dataset"] == fmt
    assert m.provenance[0]["stage"] == "manifest build" and m.provenance[0]["config"]["format"] == fmt
    assert m.provenance[0]["inputs"]
    assert m.df["image_path"].notna().all()
    assert m.image_paths().map(lambda p: Path(p).is_file()).all()
    pd.testing.assert_frame_equal(m.df, built.df, check_categorical=False)


def test_library_errors_have_the_right_types(tmp_path):
    with pytest.raises(UsageError):
        build_manifest(ImportOptions(format="fitzpatrick17k", source=make_f17k(tmp_path / "f"), out=tmp_path / "a.parquet",
                                     label_from="nine"))
    npz, _ = make_npz(tmp_path / "dermamnist.npz")
    (tmp_path / "b_images").mkdir()
    with pytest.raises(OutputExistsError):
        build_manifest(ImportOptions(format="dermamnist", source=npz, out=tmp_path / "b.parquet"))
    with pytest.raises(InputError, match="both melanoma"):
        build_manifest(ImportOptions(format="isic2017", out=tmp_path / "c.parquet",
                                     source=make_isic2017(tmp_path / "i", gt={"train": [["ISIC_1", "1", "1"]]})))
