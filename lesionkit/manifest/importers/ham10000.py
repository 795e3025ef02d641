"""HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, age, sex, localization) + images.

Seven classes in DermaMNIST order (alphabetical); ``malignant`` = mel / bcc / akiec. HAM10000 has no
patient ids: ``lesion_id`` is the grouping key (several images per lesion).
"""

from __future__ import annotations

import pandas as pd

from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import (
    add_image_sizes, attach_images, check_unique, find_file, map_labels, normalise_sex, normalise_site, read_csv, to_float,
)

NAME = "ham10000"
HELP = "HAM10000_metadata.csv + images (folder with images/ or HAM10000_images_part_1/2); 7 classes, lesion_id groups"
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
MALIGNANT = {"mel", "bcc", "akiec"}
COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
IMAGE_DIRS = ["images", "HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images", "ham10000_images_part_1", "ham10000_images_part_2"]


def build(opts: ImportOptions) -> ImportResult:
    csv = find_file(opts.source, ["HAM10000_metadata.csv", "HAM10000_metadata"], "HAM10000_metadata.csv", NAME)
    raw = read_csv(csv, COLUMNS, NAME)
    check_unique(raw["image_id"], csv, "image_id")
    dx = raw["dx"].str.strip().str.lower()
    df = pd.DataFrame(
        {
            "sample_id": raw["image_id"].str.strip(),
            "source": NAME,
            "lesion_id": raw["lesion_id"].str.strip(),
            "label": map_labels(dx, CLASSES, csv, "dx"),
            "diagnosis": dx,
            "malignant": dx.isin(list(MALIGNANT)).astype("Int8").where(dx.notna()),
            "age_approx": to_float(raw["age"]),
            "sex": normalise_sex(raw["sex"]),
            "anatom_site": normalise_site(raw["localization"]),
            "dx_type": raw["dx_type"].str.strip(),
        }
    )
    dirs = opts.images or [csv.parent / d for d in IMAGE_DIRS]
    df = attach_images(df, df["sample_id"], dirs, NAME, opts.allow_missing_images)
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(df=df, classes=CLASSES, inputs=[csv, *[d for d in dirs if d.is_dir()]],
                        notes={"binary_target": "malignant = mel | bcc | akiec", "group_by": "lesion_id"})
