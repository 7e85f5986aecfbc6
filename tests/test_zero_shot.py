"""Zero-shot finding classification (``radmi.eval.zero_shot``, ``radmi zero-shot``, the pretraining bundle's
``inference.json``).

The known-answer tests use a run whose encoders are built by hand (:class:`KnownRun`): an image's local feature
at each region is ``(m, 1 - m)`` with m the region's mean intensity, and a sentence's vector is ``(m, 1 - m)`` for
the number word it holds ("zero" = 0, "one" = 1/3, "two" = 2/3, "three" = 1; "bright" = 1, "dark" = 0). With the
dot critic at temperature 1 every score is a cosine, so the scores, the AUROCs and the ranks are known exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from radmi.models.image import BACKBONES, ImageEncoder, register_backbone

WORDS = {"zero": 0.0, "one": 1 / 3, "two": 2 / 3, "three": 1.0, "dark": 0.0, "bright": 1.0}

if "zs_patch_mean" not in BACKBONES:

    @register_backbone("zs_patch_mean")
    def _patch_mean(local_stride: int) -> tuple[nn.Module, int]:
        """One channel: the mean intensity of each ``local_stride`` x ``local_stride`` patch."""
        return nn.AvgPool2d(local_stride), 1


class WordTextEncoder(nn.Module):
    """A text encoder whose sentence and report vectors are ``(m, 1 - m)`` of the first number word."""

    def __init__(self, tokenizer, max_sentences: int = 4) -> None:
        super().__init__()
        self.values = {tokenizer.convert_tokens_to_ids(word): value for word, value in WORDS.items()}
        self.max_sentences = max_sentences
        self.embed_dim = 2

    def _vector(self, ids: torch.Tensor) -> torch.Tensor:
        for token in ids.tolist():
            if token in self.values:
                m = self.values[token]
                return torch.tensor([m, 1.0 - m])
        return torch.tensor([0.5, 0.5])

    def forward(self, input_ids, attention_mask, sentence_ids, report=True, sentences=True):
        out = {}
        batch = input_ids.shape[0]
        if sentences:
            vectors = torch.zeros(batch, self.max_sentences, 2)
            mask = torch.zeros(batch, self.max_sentences, dtype=torch.bool)
            for b in range(batch):
                for k in range(self.max_sentences):
                    ids = input_ids[b][sentence_ids[b] == k]
                    if len(ids):
                        vectors[b, k], mask[b, k] = self._vector(ids), True
            out["sentences"], out["sentence_mask"] = vectors, mask
        if report:
            out["global"] = torch.stack([self._vector(input_ids[b][sentence_ids[b] >= 0]) for b in range(batch)])
        return out


class KnownRun(nn.Module):
    """A stand-in for :class:`radmi.eval.explain.PretrainedRun` with hand-built encoders and a cosine critic."""

    def __init__(self, kind: str = "local", aggregate: str = "max") -> None:
        super().__init__()
        from radmi.losses.objectives import PretrainObjective
        from radmi.models.hub import OFFLINE_DEFAULT, load_tokenizer

        self.image_encoder = ImageEncoder(backbone="zs_patch_mean", embed_dim=2, local_stride=16)
        with torch.no_grad():  # local feature = (m, 1 - m)
            self.image_encoder.local_projection.weight.copy_(torch.tensor([[[[1.0]]], [[[-1.0]]]]))
            self.image_encoder.local_projection.bias.copy_(torch.tensor([0.0, 1.0]))
        self.tokenizer = load_tokenizer(OFFLINE_DEFAULT)
        self.text_encoder = WordTextEncoder(self.tokenizer)
        cosine = {"temperature": 1.0, "learnable_temperature": False}
        self.objective = PretrainObjective(kind=kind, embed_dim=2, critic_kwargs=cosine, aggregate=aggregate)
        self.image_size, self.crop_size, self.max_length, self.max_sentences = 32, 32, 16, 4
        self.device = torch.device("cpu")
        self.eval()


def uniform_images(values) -> torch.Tensor:
    """One 32 x 32 image per value, every pixel equal to it."""
    return torch.stack([torch.full((1, 32, 32), float(v)) for v in values])


def cosine_margin(m: float) -> float:
    """Score of ``bright`` minus ``dark`` for a feature (m, 1 - m)."""
    return (2 * m - 1) / math.hypot(m, 1 - m)


# ---- prompts -------------------------------------------------------------------------------------------------
def test_shipped_prompts_cover_every_chexpert_finding_both_ways() -> None:
    from radmi.data.labels import CHEXPERT_LABELS
    from radmi.eval.zero_shot import PROMPTS_FILE, load_prompts

    prompts = load_prompts()
    assert prompts.findings == list(CHEXPERT_LABELS) and prompts.source == str(PROMPTS_FILE)
    counts = prompts.counts()
    assert all(c["positive"] >= 3 and c["negative"] >= 3 for c in counts.values()), counts
    # every sentence belongs to exactly one finding, on one side
    assert ((prompts.positive | prompts.negative).sum(0) == 1).all()
    assert not (prompts.positive & prompts.negative).any()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"Effusion": {"positive": ["a"], "negative": ["b"]}}', "unknown finding"),
        ('{"Edema": {"positive": [], "negative": ["b"]}}', "'positive' must be a non-empty list"),
        ('{"Edema": {"positive": ["a"], "negative": [" "]}}', "empty or non-text prompt"),
        ("{not json", "not a valid JSON prompts file"),
    ],
)
def test_a_bad_prompts_file_names_itself(tmp_path, spec, message) -> None:
    from radmi.errors import RadmiError
    from radmi.eval.zero_shot import load_prompts

    path = tmp_path / "prompts.json"
    path.write_text(spec)
    with pytest.raises(RadmiError, match=message) as caught:
        load_prompts(path)
    assert str(path) in str(caught.value)


# ---- the score, exactly --------------------------------------------------------------------------------------
def test_each_number_prompt_matches_its_image_exactly() -> None:
    from radmi.eval.zero_shot import ZeroShotClassifier

    spec = {"Edema": {"positive": ["zero", "one"], "negative": ["two", "three"]}}
    classifier = ZeroShotClassifier(KnownRun("local"), spec)
    scores = classifier.prompt_scores(classifier.image_features(uniform_images(WORDS[w] for w in
                                                                                 ("zero", "one", "two", "three"))))
    # one prompt matches one image exactly: cosine 1 on the diagonal, and it is each image's best prompt
    np.testing.assert_allclose(scores.diagonal().numpy(), 1.0, atol=1e-6)
    assert scores.argmax(dim=1).tolist() == [0, 1, 2, 3]
    # finding score = best positive - best negative
    expected = scores[:, :2].max(1).values - scores[:, 2:].max(1).values
    torch.testing.assert_close(classifier.finding_scores(scores)[:, 0], expected)


@pytest.mark.parametrize(
    ("kind", "aggregate", "expected"),
    [
        ("local", "max", 0.0),  # the bright region matches "bright", a dark region "dark": both cosines 1
        ("local", "mean", 0.25 - 0.75),  # mean over the 4 regions of cosines (1, 0, 0, 0) and (0, 1, 1, 1)
        ("global", "max", cosine_margin(0.25)),  # pooled vector (0.25, 0.75) against the report vectors
    ],
)
def test_scoring_is_the_objectives_own(kind, aggregate, expected) -> None:
    """A quarter-bright image: the region aggregate of the objective (max, mean) or its pooled vector decides."""
    from radmi.eval.zero_shot import ZeroShotClassifier

    image = torch.zeros(1, 1, 32, 32)
    image[..., :16, :16] = 1.0  # one of the 2 x 2 regions is bright
    classifier = ZeroShotClassifier(KnownRun(kind, aggregate), {"Pleural Effusion": {"positive": ["bright"],
                                                                                     "negative": ["dark"]}})
    assert classifier(image)[0, 0].item() == pytest.approx(expected, abs=1e-6)


def test_zero_shot_auroc_is_known() -> None:
    """Scores rise with the image intensity: effusion (bright positive) ranks 8 of 9 pairs right, cardiomegaly
    (prompts the other way round) 1 of 9."""
    from radmi.eval.metrics import finding_metrics
    from radmi.eval.zero_shot import ZeroShotClassifier

    spec = {
        "Cardiomegaly": {"positive": ["dark"], "negative": ["bright"]},
        "Pleural Effusion": {"positive": ["bright"], "negative": ["dark"]},
    }
    classifier = ZeroShotClassifier(KnownRun("local"), spec)
    assert classifier.finding_names == ["Cardiomegaly", "Pleural Effusion"]  # CheXpert order
    m = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]
    scores = classifier.score_images(uniform_images(m), batch_size=4)
    np.testing.assert_allclose(scores[:, 1], [cosine_margin(v) for v in m], atol=1e-5)
    np.testing.assert_allclose(scores[:, 0], -scores[:, 1], atol=1e-5)
    labels = np.array([[1, 1, 1, 0, 0, 0]] * 2, dtype=float).T
    metrics = finding_metrics(labels, scores, classifier.finding_names, n_bootstrap=50)
    assert metrics.auroc["Pleural Effusion"].value == pytest.approx(8 / 9)
    assert metrics.auroc["Cardiomegaly"].value == pytest.approx(1 / 9)
    assert metrics.macro_auroc.value == pytest.approx(0.5)


# ---- a run directory, the command and the bundle ------------------------------------------------------------
def _make_run(folder: Path, bert: Path, kind: str = "local") -> Path:
    """A `radmi pretrain` run folder with untrained parts (tiny BERT, ResNet-18 at E = 32), as the recipe lays it out."""
    from radmi.bundle.paths import bundle_config
    from radmi.losses.objectives import PretrainObjective
    from radmi.models.hub import load_tokenizer
    from radmi.models.image import ImageEncoder
    from radmi.models.text import TextEncoder

    models = folder / "models"
    torch.manual_seed(0)
    ImageEncoder(backbone="resnet18", embed_dim=32, local_stride=16).save(models)
    text_dir = TextEncoder(str(bert), embed_dim=32, max_sentences=4).save_pretrained(models / "text_encoder")
    load_tokenizer(str(bert)).save_pretrained(text_dir)
    objective = PretrainObjective(kind=kind, embed_dim=32)
    torch.save(objective.state_dict(), models / "critic.pt")
    (models / "objective.json").write_text(json.dumps(objective.config))
    config = json.loads(bundle_config("radmi_cxr_pretrain").read_text())
    config.update(objective=kind, embed_dim=32, image_size=64, crop_size=56, max_length=32, max_sentences=4,
                  text_model=str(bert))  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from pretrain_data import write_tiny_bert, write_tiny_manifest

    root = tmp_path_factory.mktemp("zero_shot")
    manifest = write_tiny_manifest(root / "data", n_train=4, n_validate=8)
    bert = write_tiny_bert(root / "bert")
    return {"manifest": manifest, "bert": bert, "run": _make_run(root / "run", bert)}


def test_zero_shot_command_writes_metrics_and_report(tiny, tmp_path, capsys) -> None:
    from radmi.cli import main

    out = tmp_path / "zs"
    assert main(["zero-shot", str(tiny["run"]), "--data", str(tiny["manifest"]), "--split", "validate",
                 "--out", str(out), "--bootstrap", "20"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 8 and metrics["run"]["objective"] == "local"
    assert metrics["run"]["crop_size"] == 56 and metrics["run"]["aggregate"] == "max"
    assert metrics["auroc"]["Cardiomegaly"]["status"] == "ok"  # the tiny data labels only cardiomegaly
    assert metrics["auroc"]["Edema"]["status"] == "no positives"
    for name in ("metrics.csv", "report.md", "roc.png", "scores.csv"):
        assert (out / name).is_file(), name
    assert "Zero-shot finding classification" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "radmi zero-shot: 8 images, 88 prompts for 14 findings" in printed
    assert "nodule" not in printed.lower()  # report text is never shown


def test_zero_shot_command_reads_a_cache_and_custom_prompts(tiny, tmp_path) -> None:
    from radmi.data.cache import prepare_cache
    from radmi.eval.zero_shot import evaluate_zero_shot

    cache = tmp_path / "cache"
    prepare_cache(tiny["manifest"], cache, size=64, max_length=32, workers=1, progress=False)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"Cardiomegaly": {"positive": ["The heart is enlarged."],
                                                    "negative": ["The heart size is normal."]}}))
    metrics, result = evaluate_zero_shot(tiny["run"], cache, "validate", None, prompts=prompts, n_bootstrap=0)
    assert result.findings == ["Cardiomegaly"] and result.scores.shape == (8, 1)
    # the same images from the manifest score the same up to the cache's 8-bit quantization
    _, from_manifest = evaluate_zero_shot(tiny["run"], tiny["manifest"], "validate", None, prompts=prompts,
                                          n_bootstrap=0)  # fmt: skip
    np.testing.assert_allclose(result.scores, from_manifest.scores, atol=0.05)


def test_zero_shot_errors_are_one_line(tiny, tmp_path, capsys) -> None:
    from radmi.cli import main

    bad = tmp_path / "prompts.json"
    bad.write_text('{"Effusion": {"positive": ["a"], "negative": ["b"]}}')
    assert main(["zero-shot", str(tiny["run"]), "--data", str(tiny["manifest"]), "--prompts", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("radmi zero-shot: error: ") and str(bad) in err[0]
    assert main(["zero-shot", str(tiny["run"]), "--data", str(tiny["manifest"]), "--split", "test"]) == 1
    assert "no rows in split 'test'" in capsys.readouterr().err


def test_pretrain_bundle_inference_writes_zero_shot_scores(tiny, tmp_path) -> None:
    """`python -m monai.bundle run --config_file .../radmi_cxr_pretrain/configs/inference.json` on a DICOM folder."""
    from _bundle_fixtures import random_pixels, write_dicom
    from monai.bundle import run as bundle_run

    from radmi.bundle.paths import bundle_config
    from radmi.data.labels import CHEXPERT_LABELS

    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    for i in range(3):
        write_dicom(dicoms / f"img{i}.dcm", random_pixels(i))
    (dicoms / "broken.dcm").write_bytes(b"not a dicom")
    out = tmp_path / "out"
    bundle_run(config_file=str(bundle_config("radmi_cxr_pretrain", "inference.json")), run_dir=str(tiny["run"]),
               dataset_dir=str(dicoms), output_dir=str(out), show_progress=False, device="cpu")  # fmt: skip
    import pandas as pd

    table = pd.read_csv(out / "zero_shot.csv")
    assert list(table.columns[-14:]) == list(CHEXPERT_LABELS)
    assert (table["status"] == "ok").sum() == 3 and (table["status"] == "error").sum() == 1
    values = table.loc[table["status"] == "ok", list(CHEXPERT_LABELS)].to_numpy()
    assert ((values > 0) & (values < 1)).all()  # sigmoid of best positive minus best negative
    # the same scores as the Python API
    from radmi.eval.zero_shot import ZeroShotClassifier

    api = ZeroShotClassifier(tiny["run"]).score_files(sorted(dicoms.glob("img*.dcm")))
    np.testing.assert_allclose(values, 1 / (1 + np.exp(-api[list(CHEXPERT_LABELS)].to_numpy())), atol=1e-5)


# ---- the benchmark's zero-shot column -----------------------------------------------------------------------
def test_benchmark_tables_get_a_zero_shot_column_and_a_retrieval_table() -> None:
    import pandas as pd

    from radmi.eval.benchmark import results_markdown

    rows = [{"init": init, "mode": "probe", "fraction": 0.1, "seed": 0, "macro_auroc": 0.7, "ci_low": 0.6,
             "ci_high": 0.8, "auroc:Edema": 0.7, "auroc:Edema_ci_low": 0.6, "auroc:Edema_ci_high": 0.8,
             "auroc:Edema_status": "ok"} for init in ("random", "global MI")]  # fmt: skip
    zero_shot = {"global MI": {"macro_auroc": {"value": 0.612, "ci_low": 0.5, "ci_high": 0.7, "status": "ok"},
                               "auroc": {"Edema": {"value": None, "ci_low": None, "ci_high": None,
                                                   "status": "no positives"}}}}  # fmt: skip
    entry = {"value": 0.25, "ci_low": 0.1, "ci_high": 0.4, "chance": 0.05}
    retrieval = {"global MI": {"n_images": 20, "n_reports": 18,
                               "image_to_report": {f"recall_at_{k}": entry for k in (1, 5, 10)},
                               "report_to_image": {f"recall_at_{k}": entry for k in (1, 5, 10)}}}  # fmt: skip
    facts = {"command": "radmi benchmark", "data": "demo", "hardware": "cpu", "wall_minutes": 1.0, "seeds": 1}
    grounding = pd.DataFrame(columns=["model", "boxes", "pointing", "iou"])
    text = results_markdown(pd.DataFrame(rows), grounding, facts, zero_shot=zero_shot, retrieval=retrieval)
    assert "| image encoder init | linear probe 10% | zero-shot (no labels) |" in text
    assert "| random | 0.700 (0.600-0.800) | - |" in text
    assert "| global MI | 0.700 (0.600-0.800) | 0.612 (0.500-0.700) |" in text
    assert "### zero-shot (no labels)" in text and "| global MI | no positives |" in text
    assert "## Image-report retrieval on the test split" in text
    assert "| global MI | 20 / 18 | 0.250 (0.100-0.400) |" in text and "0.050 / 0.050 / 0.050" in text
    # without them the tables are as before
    plain = results_markdown(pd.DataFrame(rows), grounding, facts)
    assert "zero-shot" not in plain and "retrieval" not in plain.lower()
