"""CheXpert label policies, edema severity and the label transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radmi.data.labels import (
    CHEXPERT_LABELS,
    apply_label_policy,
    edema_ordinal_targets,
    edema_severity_to_int,
    invalid_label_values,
)
from radmi.errors import ManifestError
from radmi.transforms.labels import CheXpertLabels, CheXpertLabelsd

NAN = np.nan
RAW = np.array([1.0, 0.0, -1.0, NAN])


def test_names_in_mimic_csv_order():
    assert len(CHEXPERT_LABELS) == 14
    assert CHEXPERT_LABELS[0] == "No Finding" and CHEXPERT_LABELS[-1] == "Support Devices"
    assert CHEXPERT_LABELS.index("Pleural Effusion") == 10


@pytest.mark.parametrize(
    ("uncertain", "blank", "labels", "mask"),
    [
        ("ignore", "negative", [1, 0, 0, 0], [1, 1, 0, 1]),
        ("ignore", "ignore", [1, 0, 0, 0], [1, 1, 0, 0]),
        ("ones", "negative", [1, 0, 1, 0], [1, 1, 1, 1]),
        ("zeros", "negative", [1, 0, 0, 0], [1, 1, 1, 1]),
        ("ones", "ignore", [1, 0, 1, 0], [1, 1, 1, 0]),
    ],
)
def test_policies(uncertain, blank, labels, mask):
    got_labels, got_mask = apply_label_policy(RAW, uncertain, blank)
    assert got_labels.dtype == np.float32 and got_mask.dtype == np.float32
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_mask, mask)


def test_vectorized_table_equals_row_by_row():
    rng = np.random.default_rng(0)
    table = rng.choice(RAW, size=(50, 14))
    labels, mask = apply_label_policy(table, "ones", "ignore")
    for row in range(50):
        row_labels, row_mask = apply_label_policy(table[row], "ones", "ignore")
        np.testing.assert_array_equal(labels[row], row_labels)
        np.testing.assert_array_equal(mask[row], row_mask)


def test_invalid_values_and_policies():
    np.testing.assert_array_equal(invalid_label_values([1, 0, -1, NAN, 2, 0.5]), [0, 0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="got 2.0"):
        apply_label_policy([1.0, 2.0])
    with pytest.raises(ValueError, match="uncertainty policy"):
        apply_label_policy(RAW, uncertain="maybe")
    with pytest.raises(ValueError, match="blank policy"):
        apply_label_policy(RAW, blank="positive")


def test_edema_severity_and_ordinal_targets():
    severity = edema_severity_to_int([0.0, 1.0, 2.0, 3.0, NAN])
    np.testing.assert_array_equal(severity, [0, 1, 2, 3, -1])
    assert severity.dtype == np.int64
    targets, mask = edema_ordinal_targets(severity)
    np.testing.assert_array_equal(targets, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1]] * 4 + [[0, 0, 0]])
    with pytest.raises(ValueError, match="edema severity"):
        edema_severity_to_int([4.0])


def test_transforms_on_a_manifest_row():
    values = [1.0, "", -1.0, None, 0.0, NAN, 1.0, -1.0, "0.0", NAN, 1.0, NAN, NAN, 0.0]
    row = {**dict(zip(CHEXPERT_LABELS, values, strict=True)), "edema_severity": 3.0, "study_id": "50000001"}
    out = CheXpertLabelsd(uncertain="ignore", blank="ignore")(row)
    torch.testing.assert_close(out["labels"], torch.tensor([1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0.0]))
    torch.testing.assert_close(out["label_mask"], torch.tensor([1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1.0]))
    assert out["edema_severity"].dtype == torch.int64 and int(out["edema_severity"]) == 3
    blank = CheXpertLabelsd()({**row, "edema_severity": NAN})
    assert int(blank["edema_severity"]) == -1
    labels, mask = CheXpertLabels("ones")(values)
    assert labels[2] == 1 and mask.sum() == 14


def test_transform_errors():
    with pytest.raises(ManifestError, match="no label column"):
        CheXpertLabelsd()({"Edema": 1.0})
    row = dict.fromkeys(CHEXPERT_LABELS, 2.0)
    with pytest.raises(ManifestError, match="invalid CheXpert label"):
        CheXpertLabelsd()(row)
