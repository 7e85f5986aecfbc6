"""Manifest datasets: the sample dict, raise vs skip, and exact skip counts with DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mimic_factory import make_mimic_tree

from radmi.data.dataset import ManifestDataLoader, SkippedItem, collate_skipping, make_dataset
from radmi.data.labels import CHEXPERT_LABELS, apply_label_policy
from radmi.data.manifest import build_mimic_manifest
from radmi.data.pipeline import sample_transform
from radmi.data.reports import report_sentences
from radmi.errors import DicomError, ReportError


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    make_mimic_tree(root)
    frame = build_mimic_manifest(root, progress=False)
    Path(frame.loc[1, "image_path"]).unlink()  # row 1: image missing
    Path(frame.loc[5, "report_path"]).write_text("")  # row 5: empty report (study of row 5 only)
    return frame


@pytest.fixture(scope="module")
def transform():
    return sample_transform(image_size=16, max_length=32, label_policy="ones")


def test_sample_dict(manifest, transform):
    sample = make_dataset(manifest, transform)[3]
    assert sample["image"].shape == (1, 16, 16) and sample["image"].dtype == torch.float32
    assert float(sample["image"].min()) >= 0.0 and float(sample["image"].max()) <= 1.0
    for key in ("input_ids", "attention_mask", "sentence_ids"):
        assert sample[key].shape == (32,) and sample[key].dtype == torch.int64
    assert (
        int(sample["sentence_ids"].max())
        == len(report_sentences(Path(manifest.loc[3, "report_path"]).read_text())) - 1
    )
    labels, mask = apply_label_policy(
        manifest.loc[3, list(CHEXPERT_LABELS)].to_numpy(np.float64), "ones", "negative"
    )
    np.testing.assert_array_equal(sample["labels"].numpy(), labels)
    np.testing.assert_array_equal(sample["label_mask"].numpy(), mask)
    assert sample["study_id"].dtype == torch.int64 and int(sample["study_id"]) == int(
        manifest.loc[3, "study_id"]
    )
    assert int(sample["edema_severity"]) == 0 and sample["dicom_id"] == manifest.loc[3, "dicom_id"]
    assert "sentences" not in sample and "Edema" not in sample


def test_raise_names_the_row(manifest, transform):
    dataset = make_dataset(manifest, transform)
    with pytest.raises(DicomError) as info:
        dataset[1]
    assert info.value.row == 1 and info.value.path == manifest.loc[1, "image_path"]
    with pytest.raises(ReportError, match=r"\(row 5\): report file is empty"):
        dataset[5]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_counts_are_exact(manifest, transform, num_workers, caplog):
    dataset = make_dataset(manifest, transform, on_error="skip")
    loader = ManifestDataLoader(dataset, batch_size=2, num_workers=num_workers)
    for epoch in (1, 2):
        seen = [int(d) for batch in loader for d in batch["row"]]
        assert sorted(seen) == [0, 2, 3, 4]
        assert dataset.skips.count == 2 * epoch
    assert dataset.skips.rows == [1, 5]
    assert dataset.skips.by_error == {"DicomError": 2, "ReportError": 2}
    assert dataset.skips.table()["path"].tolist() == [
        manifest.loc[1, "image_path"],
        manifest.loc[5, "report_path"],
    ]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped manifest row")]
    assert len(logged) == 4 and all("FINDINGS" not in m for m in logged)


def test_collate_skipping_and_split(manifest, transform):
    marker = SkippedItem(7, "x.dcm", "bad", "DicomError")
    batch = collate_skipping([{"a": torch.ones(2)}, marker])
    assert batch["_skipped"] == [marker] and batch["a"].shape == (1, 2)
    assert collate_skipping([marker]) == {"_skipped": [marker]}
    assert len(make_dataset(manifest, transform, split="validate")) == 2
    with pytest.raises(ValueError, match="on_error"):
        make_dataset(manifest, transform, on_error="ignore")


def test_bugs_are_not_skipped(manifest):
    def broken(row):
        raise KeyError("a programming error")

    dataset = make_dataset(manifest, broken, on_error="skip")
    with pytest.raises(RuntimeError) as info:  # MONAI's wrapper around the transform's own error
        dataset[0]
    assert isinstance(info.value.__cause__, KeyError) and dataset.skips.count == 0
