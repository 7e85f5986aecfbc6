"""Image <-> report retrieval (``radmi.eval.retrieval``, ``radmi retrieve``) with ranks known by construction.

:class:`test_zero_shot.KnownRun` gives an image of intensity m the feature (m, 1 - m) and a report holding a number
word the vector of that number ("zero" = 0, "one" = 1/3, "two" = 2/3, "three" = 1), so the cosine critic
ranks reports by how close their number is (in angle) to the image's intensity.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_zero_shot import KnownRun, tiny, uniform_images  # noqa: F401  (the module fixture is shared)

#: five images: intensities and their reports; image 2 and 3 carry each other's report, images 0 and 4 (two
#: studies of two patients) have word-for-word the same report
INTENSITIES = [0.0, 1 / 3, 2 / 3, 1.0, 0.0]
REPORTS = ["zero", "one", "three", "two", "zero"]


def _batch(run, indices) -> dict:
    from radmi.transforms.text import TokenizeReport

    tokenize = TokenizeReport(run.tokenizer, run.max_length, run.max_sentences)
    tokens = [tokenize([f"The number is {REPORTS[i]}."]) for i in indices]
    return {
        "image": uniform_images([INTENSITIES[i] for i in indices]),
        "input_ids": torch.stack([t[0] for t in tokens]),
        "attention_mask": torch.stack([t[1] for t in tokens]),
        "sentence_ids": torch.stack([t[2] for t in tokens]),
        "study_id": torch.tensor([50000000 + i for i in indices]),
        "subject_id": torch.tensor([10000000 + i for i in indices]),
        "dicom_id": [f"img{i}" for i in indices],
    }


@pytest.mark.parametrize("kind", ["local", "global"])
def test_recall_both_ways_is_known(kind) -> None:
    from radmi.eval.retrieval import collect_features, retrieval_metrics, score_matrix

    run = KnownRun(kind)
    features = collect_features(run, [_batch(run, [0, 1, 2]), _batch(run, [3, 4])])
    # the two "zero" reports are one gallery entry, whose studies are both listed
    assert features.n_images == 5 and features.n_reports == 4
    assert features.image_report.tolist() == [0, 1, 2, 3, 0]
    assert features.report_studies[0] == ["50000000", "50000004"]
    scores = score_matrix(run.objective, features.images, features.texts, chunk=2)
    metrics = retrieval_metrics(scores, features.image_report, features.subject_id, features.report_subject(),
                                ks=(1, 2, 5), n_bootstrap=50)  # fmt: skip
    i2r, r2i = metrics["image_to_report"], metrics["report_to_image"]
    # images 0, 1, 4 find their report first; 2 and 3 find each other's report first, theirs second
    assert [i2r[f"recall_at_{k}"]["value"] for k in (1, 2, 5)] == [0.6, 1.0, 1.0]
    # "zero" and "one" find their images first; "three" and "two" find the other image first
    assert [r2i[f"recall_at_{k}"]["value"] for k in (1, 2, 5)] == [0.5, 1.0, 1.0]
    assert i2r["recall_at_1"]["chance"] == pytest.approx(1 / 4) and i2r["recall_at_5"]["chance"] == 1.0
    # a report with n of the 5 images: 1 - C(5 - n, k) / C(5, k); n = 2 for "zero", 1 for the others
    assert r2i["recall_at_1"]["chance"] == pytest.approx((0.4 + 3 * 0.2) / 4)
    assert r2i["recall_at_2"]["chance"] == pytest.approx((0.7 + 3 * 0.4) / 4)
    assert metrics["median_rank"] == {"image_to_report": 1.0, "report_to_image": 1.5}
    low, high = i2r["recall_at_1"]["ci_low"], i2r["recall_at_1"]["ci_high"]
    assert 0.0 <= low <= 0.6 <= high <= 1.0


def test_without_unique_reports_an_identical_copy_counts_against() -> None:
    """One gallery entry per image (pretraining's pairing): image 0's report ties with image 4's copy."""
    from radmi.eval.retrieval import collect_features, retrieval_metrics, score_matrix

    run = KnownRun("local")
    features = collect_features(run, [_batch(run, range(5))], unique_reports=False)
    assert features.n_reports == 5
    metrics = retrieval_metrics(score_matrix(run.objective, features.images, features.texts),
                                features.image_report, n_bootstrap=0)  # fmt: skip
    assert metrics["image_to_report"]["recall_at_1"]["value"] == pytest.approx(1 / 5)  # only image 1
    assert metrics["image_to_report"]["recall_at_1"]["ci_low"] is None


def test_ranks_count_ties_against_the_right_answer() -> None:
    from radmi.eval.retrieval import report_chance, retrieval_ranks

    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    image_ranks, report_ranks = retrieval_ranks(scores, np.array([0, 1, 2]))
    assert image_ranks.tolist() == [1, 1, 2]  # a constant critic gets the worst rank, not the best
    assert report_ranks.tolist() == [1, 1, 0]
    assert report_chance(10, np.array([1, 1]), 5) == pytest.approx(0.5)
    assert report_chance(10, np.array([3]), 2) == pytest.approx(1 - math.comb(7, 2) / math.comb(10, 2))


def test_retrieve_command_with_a_query_lists_study_ids_only(tiny, tmp_path, capsys) -> None:  # noqa: F811
    from radmi.cli import main

    out = tmp_path / "ret"
    query = next((tiny["manifest"].parent / "images").glob("*.png"))
    assert main(["retrieve", str(tiny["run"]), "--data", str(tiny["manifest"]), "--split", "validate",
                 "--out", str(out), "--bootstrap", "20", "--query", str(query), "--top", "3"]) == 0  # fmt: skip
    result = json.loads((out / "retrieval.json").read_text())
    assert result["n_images"] == 8 and result["run"]["objective"] == "local"
    assert result["image_to_report"]["recall_at_1"]["chance"] == pytest.approx(1 / result["n_reports"])
    hits = json.loads((out / "query.json").read_text())["reports"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(h["study_id"].isdigit() for h in hits)
    printed = capsys.readouterr().out
    assert "radmi retrieve: 8 images" in printed and "1. study 5000" in printed
    assert "nodule" not in printed.lower() and "heart" not in printed.lower()  # never report text


def test_retrieve_refuses_a_cache_of_another_tokenizer(tiny, tmp_path, capsys) -> None:  # noqa: F811
    from radmi.cli import main
    from radmi.data.cache import prepare_cache

    cache = tmp_path / "cache"
    prepare_cache(tiny["manifest"], cache, size=64, max_length=32, workers=1, progress=False)  # MiniLM's name
    assert main(["retrieve", str(tiny["run"]), "--data", str(cache), "--split", "validate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the cache was tokenized with offline:all-MiniLM-L6-v2" in err[0]
    assert main(["retrieve", str(tiny["run"]), "--data", str(tiny["manifest"]), "--query", str(tmp_path / "x.dcm")]) == 1
    assert "no such query image" in capsys.readouterr().err
