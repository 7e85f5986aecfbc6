"""`radmi explain`: the PNG grid has the expected size, and a (tiny, untrained) run gives one map per sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from radmi.eval.explain import Box, draw_explanation, figure_size


def test_draw_writes_png_of_expected_size(tmp_path):
    image = np.linspace(0, 1, 80 * 60, dtype=np.float32).reshape(80, 60)
    maps = np.random.default_rng(0).normal(size=(3, 5, 4))
    sentences = ["The heart is mildly enlarged.", "Small right pleural effusion " * 4, "No pneumothorax."]
    path = draw_explanation(
        image, maps, sentences, tmp_path / "x.png", boxes=[Box(5, 40, 25, 70, "Effusion", 1)]
    )
    with Image.open(path) as png:
        assert png.size == figure_size(3) == (1144, 615)
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas
    # two columns of cells: 3 sentences + the radiograph fill 2 rows, 5 sentences 3 rows; a title adds a band
    assert figure_size(5) == (1144, 880)
    assert figure_size(3, title=True)[1] > figure_size(3)[1]
    with pytest.raises(ValueError):
        draw_explanation(image, maps[:2], sentences, tmp_path / "y.png")


SENTENCES = [
    "A right-sided central line tip projects over the superior vena cava.",
    "No focal consolidation.",
    "There is a large right apical pneumothorax.",
    "There is a small right pleural effusion layering at the base.",
    "The heart is moderately enlarged.",
    "Large right apical pneumothorax.",
    "Small right pleural effusion.",
    "Moderate cardiomegaly.",
]


@pytest.mark.parametrize("n_sentences", [1, 2, 3, 8])
def test_picture_layout_has_no_empty_panel_and_readable_text(n_sentences, tmp_path):
    """One axes per picture panel plus the colour bar, none empty; every sentence beside its map; the R/L
    marker on every panel; no text under 9 pt; PNG size as figure_size; no large blank band."""
    from matplotlib.image import AxesImage
    from matplotlib.text import Text

    from radmi.eval.explain import FONT_SIZE, explanation_figure, orientation_marker

    rng = np.random.default_rng(n_sentences)
    image = rng.random((64, 64)).astype(np.float32)
    maps = rng.normal(size=(n_sentences, 4, 4)).astype(np.float32)
    sentences = SENTENCES[:n_sentences]
    boxes = [Box(5, 5, 30, 30, "Pneumothorax", n_sentences - 1), Box(30, 35, 60, 60, "Cardiomegaly", 0)]
    marker = orientation_marker("PA", ["L", "F"])
    fig = explanation_figure(image, maps, sentences, boxes, orientation=marker)
    try:
        width_in, height_in = fig.get_size_inches()
        assert (round(width_in * fig.dpi), round(height_in * fig.dpi)) == figure_size(n_sentences)
        panels = [ax for ax in fig.axes if ax.get_images()]
        others = [ax for ax in fig.axes if not ax.get_images()]
        assert len(panels) == n_sentences + 1  # the radiograph and one map per sentence
        assert len(others) == 1 and others[0].collections  # the shared colour bar, not an empty axes
        # each map panel: the radiograph under the model's map, drawn as given
        for k, ax in enumerate(panels[1:]):
            gray, heat = ax.get_images()
            np.testing.assert_array_equal(heat.get_array(), maps[k])
            assert heat.get_clim() == (float(maps.min()), float(maps.max()))
            assert heat.get_interpolation() == "bilinear" and heat.get_alpha() == 0.45
            text = " ".join(t.get_text().replace("\n", " ") for t in ax.texts)
            assert f"{k + 1}. {sentences[k]}" in text
        # panels do not overlap (a grid), and all lie inside the figure
        boxes_px = [ax.get_position().bounds for ax in panels]
        for i, (x0, y0, w0, h0) in enumerate(boxes_px):
            assert min(x0, y0) >= 0 and x0 + w0 <= 1 and y0 + h0 <= 1
            for x1, y1, w1, h1 in boxes_px[i + 1 :]:
                assert x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1 or y1 + h1 <= y0
        markers = [t for ax in panels for t in ax.texts if t.get_gid() == "orientation-marker"]
        assert len(markers) == n_sentences + 1 and {t.get_text() for t in markers} == {"R"}
        assert all(
            t.get_position()[0] < 0.5 for t in markers
        )  # L\F: the patient's right on the viewer's left
        texts = [t for t in fig.findobj(Text) if t.get_text().strip()]
        assert min(t.get_fontsize() for t in texts) >= 9 and FONT_SIZE >= 10
        # box labels are written out in readable text, not tiny labels on the image
        radiograph_text = " ".join(t.get_text().replace("\n", " ") for t in panels[0].texts)
        assert "1 Pneumothorax" in radiograph_text and "2 Cardiomegaly" in radiograph_text
        assert all(isinstance(im, AxesImage) for ax in panels for im in ax.get_images())
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        # the sentence text beside each map stays inside the figure and off every other panel
        renderer = fig.canvas.get_renderer()
        figure_box = fig.bbox
        for ax in panels:
            for t in ax.texts:
                extent = t.get_window_extent(renderer)
                assert figure_box.x0 <= extent.x0 and extent.x1 <= figure_box.x1 + 1, t.get_text()
                assert figure_box.y0 <= extent.y0 and extent.y1 <= figure_box.y1 + 1, t.get_text()
                for other in panels:
                    if other is not ax:
                        assert not extent.overlaps(other.get_window_extent(renderer)), t.get_text()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    # no half-blank page: at most a fifth of the pixel rows are plain white
    blank_rows = (pixels.min(axis=(1, 2)) >= 250).mean()
    assert blank_rows < 0.2, blank_rows


def test_orientation_marker_from_view_and_patient_orientation():
    from radmi.eval.explain import orientation_marker

    standard = orientation_marker("PA", ["L", "F"])
    assert (standard.text, standard.side) == ("R", "left")
    flipped = orientation_marker("AP", "R\\F")  # the DICOM string form
    assert (flipped.text, flipped.side) == ("R", "right")
    assert orientation_marker("", ["L", "F"]).text == "R"  # no view, but the rows run to the patient's left
    assumed = orientation_marker("AP", None)
    assert (assumed.text, assumed.side) == ("R?", "left") and "assumed" in assumed.note
    contradicting = orientation_marker("PA", ["P", "F"])  # rows do not run left-right: not trusted
    assert contradicting.text == "R?"
    assert orientation_marker("LATERAL", ["L", "F"]).text is None  # no R/L across a lateral view
    assert orientation_marker("LL", None).text is None
    unknown = orientation_marker(None, None)
    assert unknown.text is None and "unknown" in unknown.note


def test_explain_image_reads_the_marker_from_the_dicom_header(tiny_local_run, tmp_path, monkeypatch):
    import pydicom

    import radmi.eval.explain as explain
    from tests._bundle_fixtures import random_pixels, write_dicom

    drawn = {}

    def capture(image, maps, captions, path, boxes=(), title=None, orientation=None):
        drawn["orientation"] = orientation
        return path

    monkeypatch.setattr(explain, "draw_explanation", capture)
    run = explain.PretrainedRun(tiny_local_run[0])
    dicom = write_dicom(tmp_path / "flipped.dcm", random_pixels(3, rows=64, cols=64))
    ds = pydicom.dcmread(dicom)
    ds.ViewPosition, ds.PatientOrientation = "PA", ["R", "F"]
    ds.save_as(dicom)
    report = "FINDINGS: The heart is enlarged. No effusion."
    explain.explain_image(run, dicom, report, tmp_path / "a.png")
    assert (drawn["orientation"].text, drawn["orientation"].side) == ("R", "right")
    explain.explain_image(run, dicom, report, tmp_path / "b.png", patient_orientation=["L", "F"])
    assert (drawn["orientation"].text, drawn["orientation"].side) == ("R", "left")
    png = tmp_path / "c.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(png)
    explain.explain_image(run, png, report, tmp_path / "c_explain.png")
    assert drawn["orientation"].text is None  # a PNG has no header: no marker rather than a guess
    explain.explain_image(run, png, report, tmp_path / "d_explain.png", view_position="AP")
    assert drawn["orientation"].text == "R?"


def _make_run(
    run,
    kind: str = "local",
    objective_kwargs: dict | None = None,
    write_objective_json: bool = False,
    trusted: bool = True,
):
    """A pretraining run directory with untrained parts, as `radmi pretrain` lays it out.

    ``objective_kwargs`` (default: the recipe's ``dot`` critic) build the saved critic; with
    ``write_objective_json`` they also go to ``models/objective.json`` while ``config.json`` keeps ``dot``.
    """
    from radmi.bundle.paths import bundle_config
    from radmi.losses.objectives import PretrainObjective
    from radmi.models.hub import OFFLINE_DEFAULT, load_tokenizer
    from radmi.models.image import ImageEncoder
    from radmi.models.text import TextEncoder

    models = run / "models"
    torch.manual_seed(0)
    ImageEncoder(backbone="resnet18", embed_dim=384, local_stride=16).save(models)
    text_dir = TextEncoder(OFFLINE_DEFAULT, max_sentences=4).save_pretrained(models / "text_encoder")
    load_tokenizer(OFFLINE_DEFAULT).save_pretrained(text_dir)
    kwargs = {"kind": kind, "embed_dim": 384, **(objective_kwargs or {})}
    objective = PretrainObjective(**kwargs)
    torch.save(objective.state_dict(), models / "critic.pt")
    if write_objective_json:
        (models / "objective.json").write_text(json.dumps(kwargs))
    config = json.loads(bundle_config("radmi_cxr_pretrain").read_text())
    config.update(objective=kind, embed_dim=384, image_size=64, max_length=48, max_sentences=4, critic="dot")
    (run / "config.json").write_text(json.dumps(config))
    if trusted:
        from radmi.trust import record_trusted

        record_trusted(run)  # as `radmi pretrain` does for the configs it writes (radmi.trust)
    return run, objective


@pytest.fixture(scope="module")
def tiny_local_run(tmp_path_factory):
    """A local-MI run, rebuilt from its config.json (no objective.json: the fallback path)."""
    return _make_run(tmp_path_factory.mktemp("pretrain_run"), "local")


@pytest.fixture(scope="module")
def tiny_global_run(tmp_path_factory):
    """A global-MI run with the dot critic."""
    return _make_run(tmp_path_factory.mktemp("global_run"), "global")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """12 demo studies (96 px), shared by the grounding tests."""
    from radmi.data.demo.generate import generate

    data = tmp_path_factory.mktemp("demo")
    generate(data, studies=12, seed=0, size=96, compress="none", progress=False)
    return data


def test_explain_end_to_end(tiny_local_run, tmp_path):
    from radmi.cli import main
    from radmi.eval.explain import PretrainedRun

    run_dir, _ = tiny_local_run
    pixels = (np.random.default_rng(1).random((90, 70)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "abc.png")
    report = tmp_path / "r.txt"
    report.write_text(
        "FINDINGS: The heart is enlarged. There is a small left effusion.\n\nIMPRESSION: Cardiomegaly.\n"
    )
    boxes = tmp_path / "finding-locations.csv.gz"
    import pandas as pd

    pd.DataFrame(
        [
            {
                "dicom_id": "abc",
                "study_id": "5",
                "label": "Cardiomegaly",
                "side": "",
                "zone": "",
                "x0": 10,
                "y0": 20,
                "x1": 50,
                "y1": 70,
                "sentence_index": 0,
            }
        ]
    ).to_csv(boxes, index=False)
    assert (
        main(
            [
                "explain",
                str(tmp_path / "abc.png"),
                "--report",
                str(report),
                "--run",
                str(run_dir),
                "--out",
                str(tmp_path / "out"),
                "--boxes",
                str(boxes),
            ]
        )
        == 0
    )
    with Image.open(tmp_path / "out" / "abc_explain.png") as png:
        assert png.size == figure_size(3)

    run = PretrainedRun(run_dir)
    image = torch.rand(1, 64, 64)
    maps = run.sentence_maps(image, ["The heart is enlarged.", "Small left effusion.", "Cardiomegaly."])
    assert maps.shape == (3, 4, 4)  # 3 sentences, 64 / 16 regions a side
    # equals the critic applied by hand: the dot critic on the region and sentence features
    tokens = run.tokenize(["The heart is enlarged.", "Small left effusion.", "Cardiomegaly."])
    with torch.no_grad():
        text = run.text_encoder(tokens["input_ids"], tokens["attention_mask"], tokens["sentence_ids"])
        _, local = run.image_encoder(image[None])
        expected = run.objective.loss.critic.paired(
            local.flatten(2).transpose(1, 2), text["sentences"][:, :3]
        )
    np.testing.assert_allclose(maps, expected[0].T.reshape(3, 4, 4).numpy(), rtol=1e-5, atol=1e-6)


def test_evaluate_grounding_end_to_end(tiny_local_run, demo_data, tmp_path):
    import pandas as pd

    from radmi.cli import main

    run_dir, _ = tiny_local_run
    data = demo_data
    out = tmp_path / "grounding"
    assert main(["evaluate-grounding", str(run_dir), "--data", str(data), "--split", "train",
                 "--bootstrap", "50", "--out", str(out)]) == 0  # fmt: skip
    pairs = pd.read_csv(out / "pairs.csv")
    counts = json.loads((out / "counts.json").read_text())
    locations = pd.read_csv(data / "finding-locations.csv.gz", dtype={"dicom_id": str})
    assert (
        counts["boxes"] + counts["skipped_sentence_truncated"]
        == locations["dicom_id"].isin(pairs["dicom_id"]).sum()
    )
    assert len(pairs) > 0 and set(pairs["pointing"]) <= {0.0, 1.0}
    for column in ("iou", "uniform_pointing", "uniform_iou", "centre_iou"):
        assert pairs[column].between(0, 1).all()
    summary = pd.read_csv(out / "summary.csv")
    overall = summary[(summary["label"] == "overall") & (summary["score"] == "pointing")].iloc[0]
    assert overall["mean"] == pytest.approx(pairs["pointing"].mean())
    assert "overall" in (out / "report.md").read_text()
    # sentence specificity: boxes that share their image with another finding's sentence
    assert counts["map"] == "sentence"
    with_other = pairs[pairs["n_other"] > 0]
    assert counts["boxes_with_other_sentence"] == len(with_other) > 0
    assert (
        with_other["other_pointing"].between(0, 1).all()
        and pairs.loc[pairs["n_other"] == 0, "other_pointing"].isna().all()
    )
    specificity = pd.read_csv(out / "specificity.csv")
    assert list(specificity.columns) == ["label", "score", "n", "mean", "ci_low", "ci_high"]
    get = specificity.set_index(["label", "score"])
    assert get.loc[("overall", "own_pointing"), "n"] == len(with_other)
    assert get.loc[("overall", "own_pointing"), "mean"] == pytest.approx(with_other["pointing"].mean())
    assert get.loc[("overall", "other_pointing"), "mean"] == pytest.approx(
        with_other["other_pointing"].mean()
    )
    assert get.loc[("overall", "own_minus_other_pointing"), "mean"] == pytest.approx(
        with_other["pointing"].mean() - with_other["other_pointing"].mean()
    )
    assert "Sentence specificity" in (out / "report.md").read_text()


class _SentenceBlindRun:
    """A stand-in run whose map ignores the sentence: one seeded 4 x 4 map per image, repeated per sentence."""

    image_size = 64
    has_region_maps = True
    has_report_map = False

    def sentence_maps(self, image, sentences):
        seed = int(np.asarray(image).sum() * 1000) % 2**32
        one = np.random.default_rng(seed).random((4, 4))
        return np.repeat(one[None], len(sentences), axis=0)


def test_a_sentence_blind_run_has_zero_specificity(demo_data):
    import pandas as pd

    from radmi.eval.grounding import grounding_pairs, summarize_specificity

    pairs, counts = grounding_pairs(_SentenceBlindRun(), demo_data, "train", progress=False)
    with_other = pairs[pairs["n_other"] > 0]
    assert len(with_other) > 0 and counts["boxes_with_other_sentence"] == len(with_other)
    np.testing.assert_array_equal(with_other["pointing"], with_other["other_pointing"])
    np.testing.assert_array_equal(with_other["iou"], with_other["other_iou"])
    # the boxes with another sentence: on images with >= 2 distinct described sentences among the scored boxes
    locations = pd.read_csv(demo_data / "finding-locations.csv.gz", dtype={"dicom_id": str})
    scored = locations[locations["dicom_id"].isin(pairs["dicom_id"]) & (locations["sentence_index"] >= 0)]
    distinct = scored.groupby("dicom_id")["sentence_index"].transform("nunique")
    assert len(with_other) == int((distinct >= 2).sum())
    summary = summarize_specificity(pairs, n_bootstrap=100).set_index(["label", "score"])
    row = summary.loc[("overall", "own_minus_other_pointing")]
    assert row["mean"] == 0.0 and row["ci_low"] == 0.0 and row["ci_high"] == 0.0


def test_global_run_report_map_by_hand(tiny_global_run):
    import torch.nn.functional as F

    from radmi.eval.explain import PretrainedRun

    run = PretrainedRun(tiny_global_run[0])
    assert run.kind == "global" and run.has_report_map and not run.has_region_maps
    image = torch.rand(1, 64, 64)
    sentences = ["The heart is enlarged.", "Small left effusion."]
    assert run.sentence_maps(image, sentences) is None
    report_map = run.report_map(image, sentences)
    assert report_map.shape == (4, 4)
    tokens = run.tokenize(sentences)
    with torch.no_grad():
        text = run.text_encoder(tokens["input_ids"], tokens["attention_mask"], tokens["sentence_ids"])
        _, local = run.image_encoder(image[None])
        cosine = torch.einsum(
            "ehw,e->hw", F.normalize(local[0], dim=0), F.normalize(text["global"][0], dim=0)
        )
        expected = cosine * run.objective.loss.critic.scale  # the dot critic: cosine / temperature
    np.testing.assert_allclose(report_map, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_evaluate_grounding_scores_the_global_report_map(tiny_global_run, demo_data, tmp_path):
    import pandas as pd

    from radmi.cli import main

    out = tmp_path / "grounding"
    assert main(["evaluate-grounding", str(tiny_global_run[0]), "--data", str(demo_data), "--split", "train",
                 "--bootstrap", "20", "--out", str(out)]) == 0  # fmt: skip
    counts = json.loads((out / "counts.json").read_text())
    assert counts["map"] == "report" and counts["boxes_with_other_sentence"] == 0
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) > 0 and set(pairs["pointing"]) <= {0.0, 1.0} and pairs["iou"].between(0, 1).all()
    specificity = pd.read_csv(out / "specificity.csv")
    assert (specificity["n"] == 0).all() and specificity["mean"].isna().all()
    report = (out / "report.md").read_text()
    assert "region-to-report map" in report and "does not apply" in report


def test_explain_draws_one_panel_for_a_global_run(tiny_global_run, tmp_path):
    from radmi.eval.explain import PretrainedRun, explain_image

    pixels = (np.random.default_rng(1).random((90, 70)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    path = explain_image(
        PretrainedRun(tiny_global_run[0]), tmp_path / "g.png", "FINDINGS: Heart enlarged. No effusion.", tmp_path / "g_explain.png",
        [Box(10, 20, 50, 70, "Cardiomegaly", 0)],
    )  # fmt: skip
    with Image.open(path) as png:
        assert png.size == figure_size(1)


def test_objective_json_is_preferred_over_the_recipe(tmp_path):
    from radmi.errors import ModelLoadError
    from radmi.eval.explain import PretrainedRun
    from radmi.losses.critics import BilinearCritic

    # config.json says the dot critic; models/objective.json (and critic.pt) a bilinear one
    run_dir, objective = _make_run(
        tmp_path / "run", "local", {"critic": "bilinear"}, write_objective_json=True
    )
    run = PretrainedRun(run_dir)
    assert isinstance(run.objective.loss.critic, BilinearCritic)
    torch.testing.assert_close(run.objective.loss.critic.weight, objective.loss.critic.weight)
    assert run.sentence_maps(torch.rand(1, 64, 64), ["Heart enlarged.", "No effusion."]).shape == (2, 4, 4)
    # without it, the recipe's dot critic is rebuilt, and the bilinear critic.pt does not fit it
    (run_dir / "models" / "objective.json").unlink()
    with pytest.raises(ModelLoadError, match="critic.pt does not match"):
        PretrainedRun(run_dir)
    (run_dir / "models" / "objective.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        PretrainedRun(run_dir)


def test_a_run_radmi_did_not_write_is_read_as_data_only(tmp_path, capsys):
    """A copied run (not in the trust file) loads when nothing in it needs evaluating; otherwise a one-line
    refusal that offers --trust, before any of its code runs."""
    from radmi.cli import main
    from radmi.errors import ModelLoadError
    from radmi.eval.explain import PretrainedRun
    from radmi.trust import is_trusted

    # objective.json (kwargs) and literal image_size/max_length/...: nothing to evaluate, so it loads
    run_dir, _ = _make_run(tmp_path / "copied", "local", write_objective_json=True, trusted=False)
    assert not is_trusted(run_dir)
    assert PretrainedRun(run_dir).image_size == 64
    # an expression where a setting is read: refused without running it, unless trusted
    marker = tmp_path / "ran"
    config = json.loads((run_dir / "config.json").read_text())
    config["image_size"] = f"$__import__('pathlib').Path({str(marker)!r}).touch() or 64"
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not trusted") as caught:
        PretrainedRun(run_dir)
    assert str(run_dir) in str(caught.value) and "--trust" in str(caught.value)
    assert not marker.exists()
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    (tmp_path / "r.txt").write_text("FINDINGS: Heart enlarged.")
    args = ["explain", str(image), "--report", str(tmp_path / "r.txt"), "--run", str(run_dir), "--out", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("radmi explain: error: ") and "not trusted" in err and "--trust" in err
    assert not marker.exists()
    assert PretrainedRun(run_dir, trust=True).image_size == 64 and marker.exists()
    # an objective.json naming code outside radmi.losses is refused too
    marker.unlink()
    config["image_size"] = 64
    config["copied_from"] = "elsewhere"  # trust goes by content: not the same bytes as any radmi-written run
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "models" / "objective.json").write_text(
        json.dumps({"_target_": "pathlib.Path.touch", "self": str(marker)})
    )
    with pytest.raises(ModelLoadError, match="not trusted"):
        PretrainedRun(run_dir)
    assert not marker.exists()
    # without objective.json the recipe's loss_def expression would be evaluated: refused
    (run_dir / "models" / "objective.json").unlink()
    with pytest.raises(ModelLoadError, match="not trusted"):
        PretrainedRun(run_dir)
