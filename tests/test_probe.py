"""The frozen-feature linear probe (radmi.eval.probe): fitting, C selection, label masking, edema, extraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import MANIFEST_COLUMNS
from radmi.eval.probe import (
    NOT_ESTIMABLE,
    Features,
    _pick_c,
    evaluate_probe,
    extract_features,
    fit_probe,
    load_probe_encoder,
    train_subset,
)

L = len(CHEXPERT_LABELS)


def _features(n: int, rng: np.random.Generator, signal: float, dim: int = 8, patients: int | None = None,
              split: str = "x") -> Features:  # fmt: skip
    """N rows; finding j is positive where feature j % dim (+ noise) > 0 (``signal`` 0 -> random labels)."""
    x = rng.normal(size=(n, dim)).astype(np.float32) * 3.0 + 5.0  # not centred, not unit scale
    noise = rng.normal(size=(n, L))
    z = (x[:, np.arange(L) % dim] - 5.0) / 3.0
    labels = (signal * z + noise * (1.0 if signal == 0 else 0.05) > 0).astype(np.float32)
    severity = np.digitize(z[:, 0] * max(signal, 0) + (noise[:, 0] if signal == 0 else 0), [-0.5, 0.3, 1.0])
    patients = n if patients is None else patients
    subject = np.array([f"{split}{i % patients}" for i in range(n)])
    return Features(features=x, labels=labels, label_mask=np.ones_like(labels), edema_severity=severity.astype(np.int64),
                    subject_id=subject, dicom_id=np.array([f"{split}-{i}" for i in range(n)]))  # fmt: skip


def _splits(signal: float, seed: int = 0, n: int = 300) -> dict[str, Features]:
    rng = np.random.default_rng(seed)
    return {s: _features(n, rng, signal, split=s) for s in ("train", "validate", "test")}


def test_separable_features_give_auroc_near_one():
    result = evaluate_probe(_splits(signal=1.0), n_bootstrap=200)
    macro = result.metrics.macro_auroc
    assert macro.value > 0.98
    assert all(e.value > 0.95 for e in result.metrics.auroc.values())
    assert all(p["converged"] for p in result.facts["findings"].values())
    # the three ordinal edema AUCs come from the multinomial model through edema_ordinal_aucs
    assert set(result.metrics.edema) == {"0v123", "01v23", "012v3"}
    assert all(e.value > 0.95 for e in result.metrics.edema.values())


def test_random_labels_give_chance_within_ci():
    result = evaluate_probe(_splits(signal=0.0, seed=3), n_bootstrap=300)
    macro = result.metrics.macro_auroc
    assert abs(macro.value - 0.5) < 0.06
    assert macro.ci_low < 0.5 < macro.ci_high
    assert all(e.value is None or abs(e.value - 0.5) < 0.1 for e in result.metrics.edema.values())


def test_c_is_the_grid_value_with_the_best_validation_auroc():
    rng = np.random.default_rng(1)
    splits = {s: _features(60, rng, signal=0.4, dim=40, split=s) for s in ("train", "validate")}
    for f in splits.values():  # weak signal, many features, few rows: the validation AUROC depends on C
        f.labels[:, 2] = (rng.random(len(f)) < 0.5 + 0.2 * np.tanh(f.features[:, 1] - 5.0)).astype(np.float32)
    grid = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    probe = fit_probe(splits["train"], splits["validate"], c_grid=grid, edema=False)
    scaler = StandardScaler().fit(splits["train"].features.astype(np.float64))
    zt = scaler.transform(splits["train"].features.astype(np.float64))
    zv = scaler.transform(splits["validate"].features.astype(np.float64))
    finding = probe.findings[2]
    expected = {
        c: roc_auc_score(splits["validate"].labels[:, 2],
                         LogisticRegression(C=c, max_iter=2000).fit(zt, splits["train"].labels[:, 2]).decision_function(zv))
        for c in grid
    }  # fmt: skip
    assert finding.validation_auroc == pytest.approx(expected)
    best = max(expected.values())
    assert finding.c == min(c for c, v in expected.items() if v == best)
    assert finding.c_source == "validation"
    assert len(set(np.round(list(expected.values()), 6))) > 1  # the grid really matters here


def test_pick_c_breaks_ties_toward_the_smaller_c_and_skips_undefined():
    assert _pick_c({0.01: 0.7, 0.1: 0.8, 1.0: 0.8}) == 0.1
    assert _pick_c({0.01: None, 1.0: 0.6}) == 1.0
    assert _pick_c({0.01: None}) is None


def test_single_class_finding_is_not_estimable_and_left_out_of_the_macro():
    splits = _splits(signal=1.0)
    splits["train"].labels[:, 3] = 0.0  # no positives among the training rows
    result = evaluate_probe(splits, n_bootstrap=50)
    est = result.metrics.auroc[CHEXPERT_LABELS[3]]
    assert est.value is None and est.status.startswith(NOT_ESTIMABLE)
    assert "no positives" in est.status
    assert result.facts["findings"][CHEXPERT_LABELS[3]]["status"] == NOT_ESTIMABLE
    ok = [e.value for e in result.metrics.auroc.values() if e.value is not None]
    assert len(ok) == L - 1
    assert result.metrics.macro_auroc.value == pytest.approx(np.mean(ok))


def test_masked_entries_do_not_train_the_probe():
    splits = _splits(signal=1.0)
    train = splits["train"]
    masked = np.zeros(len(train), dtype=bool)
    masked[::3] = True
    train.label_mask[masked, 0] = 0.0
    poisoned = Features(**{k: getattr(train, k).copy() for k in ("features", "labels", "label_mask",
                                                                  "edema_severity", "subject_id", "dicom_id")})  # fmt: skip
    poisoned.labels[masked, 0] = 1.0 - poisoned.labels[masked, 0]  # flipped, but masked out
    a = fit_probe(train, splits["validate"], edema=False).findings[0]
    b = fit_probe(poisoned, splits["validate"], edema=False).findings[0]
    assert a.n_train == b.n_train == int((~masked).sum())
    np.testing.assert_allclose(a.model.coef_, b.model.coef_)
    # an unmasked flip does change it
    train.label_mask[masked, 0] = 1.0
    poisoned.label_mask[masked, 0] = 1.0
    c = fit_probe(poisoned, splits["validate"], edema=False).findings[0]
    assert not np.allclose(a.model.coef_, c.model.coef_)


def test_train_ids_restrict_the_training_rows():
    splits = _splits(signal=1.0)
    keep = splits["train"].dicom_id[:40].tolist()
    result = evaluate_probe(splits, train_ids=keep, n_bootstrap=0)
    assert result.facts["n_train_images"] == 40
    assert result.probe.findings[0].n_train == 40


def test_edema_with_one_grade_in_training_is_not_estimable():
    splits = _splits(signal=1.0)
    splits["train"].edema_severity[:] = 0
    metrics = evaluate_probe(splits, n_bootstrap=0).metrics
    assert all(e.value is None and e.status.startswith(NOT_ESTIMABLE) for e in metrics.edema.values())


# ------------------------------------------------------------------------------------------------ extraction
@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> str:
    """24 PNG radiographs of 12 patients (train: 6 patients); Cardiomegaly = a bright disc."""
    root = tmp_path_factory.mktemp("tiny_probe")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        positive = i % 2
        pixels = rng.integers(0, 60, size=(40, 36)).astype(np.uint8)
        if positive:
            yy, xx = np.mgrid[:40, :36]
            pixels[(yy - 22) ** 2 + (xx - 18) ** 2 < 80] = 220
        Image.fromarray(pixels).save(root / f"img{i}.png")
        (root / f"rep{i}.txt").write_text("FINDINGS: text.\n")
        row = {"subject_id": f"1{i // 2:07d}", "study_id": f"5{i:07d}", "dicom_id": f"d{i}",
               "image_path": f"img{i}.png", "report_path": f"rep{i}.txt", "view": "PA",
               "split": ["train", "train", "validate", "test"][(i // 2) % 4], "edema_severity": ""}  # fmt: skip
        for name in CHEXPERT_LABELS:
            row[name] = rng.choice(["1.0", "0.0", "-1.0", ""])
        row["Cardiomegaly"] = "1.0" if positive else "0.0"
        rows.append(row)
    path = root / "manifest.csv"
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(path, index=False)
    return str(path)


ENCODER = {"backbone": "resnet18", "embed_dim": 16, "local_stride": 16}


def test_extracted_features_equal_a_direct_encoder_call(tiny_manifest):
    from radmi.engines.classify import classification_dataset

    encoder = load_probe_encoder("random", ENCODER, seed=0)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    dataset = classification_dataset(tiny_manifest, "train", image_size=32)
    feats = extract_features(encoder, dataset, batch_size=5)
    images = torch.stack([torch.as_tensor(dataset[i]["image"]).float() for i in range(len(dataset))])
    with torch.no_grad():
        direct = encoder(images)[0].numpy()
    assert feats.features.shape == (len(dataset), 16)
    np.testing.assert_allclose(feats.features, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(feats.dicom_id, [dataset.data[i]["dicom_id"] for i in range(len(dataset))])
    # the recipe's label mask: an uncertain (-1.0) entry is masked out under the default U-Ignore policy
    raw = pd.DataFrame(dataset.data)[list(CHEXPERT_LABELS)].astype(float).to_numpy()
    np.testing.assert_array_equal(feats.label_mask[raw == -1.0], 0.0)
    np.testing.assert_array_equal(feats.labels[raw == 1.0], 1.0)


def test_random_encoder_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = load_probe_encoder("random", ENCODER, seed=3).state_dict()
    b = load_probe_encoder("random", ENCODER, seed=3).state_dict()
    c = load_probe_encoder("random", ENCODER, seed=4).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["local_projection.weight"], c["local_projection.weight"])


def test_pretrained_encoder_is_loaded_from_a_run_directory(tmp_path):
    from radmi.models.image import ImageEncoder

    torch.manual_seed(7)
    saved = ImageEncoder(**ENCODER)
    saved.save(tmp_path / "run" / "models")
    loaded = load_probe_encoder(tmp_path / "run")
    assert not loaded.training
    for key, value in saved.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


@pytest.mark.parametrize("fraction,seed", [(0.5, 0), (0.5, 1), (1.0, 0)])
def test_train_subset_is_the_recipes_label_fraction_draw(tiny_manifest, fraction, seed):
    from radmi.engines.classify import classification_dataset

    dataset = classification_dataset(
        tiny_manifest, "train", image_size=32, label_fraction=fraction, seed=seed
    )
    assert train_subset(tiny_manifest, fraction, seed) == [str(r["dicom_id"]) for r in dataset.data]


def test_features_round_trip_through_npz(tmp_path):
    feats = _splits(signal=1.0, n=20)["test"]
    back = Features.load(feats.save(tmp_path / "f.npz"))
    for name in ("features", "labels", "label_mask", "edema_severity"):
        np.testing.assert_array_equal(getattr(back, name), getattr(feats, name))
    assert back.dicom_id.tolist() == feats.dicom_id.tolist()
