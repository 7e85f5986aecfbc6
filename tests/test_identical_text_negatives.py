"""Identical texts are not negatives: keys from the data path, masks in the estimators, objectives."""

from __future__ import annotations

import math

import pytest
import torch

from radmi.losses.critics import DotCritic
from radmi.losses.estimators import infonce_bound, same_text_negatives_mask
from radmi.losses.global_mi import GlobalMILoss
from radmi.losses.local_mi import LocalMILoss
from radmi.losses.objectives import PretrainObjective
from radmi.transforms.text import SentenceTextKeys, SentenceTextKeysd, TokenizeReport


@pytest.fixture(scope="module")
def tokenize():
    return TokenizeReport("offline:all-MiniLM-L6-v2", max_length=40)


def test_keys_are_equal_exactly_for_equal_token_ids(tokenize):
    reports = [
        ["No cardiomegaly.", "Right lower lobe opacity."],
        ["Right lower lobe opacity.", "NO  cardiomegaly."],  # same tokens after the tokenizer's lower-casing
        ["No cardiomegaly seen.", "Opacity right lower lobe."],  # same words, other order
    ]
    ids, _, sids = (torch.stack(x) for x in zip(*[tokenize(r) for r in reports], strict=True))
    keys, report_keys = SentenceTextKeys(max_sentences=3)(ids, sids)
    assert keys.shape == (3, 3) and keys.dtype == torch.int64
    assert keys[0, 0] == keys[1, 1] and keys[0, 1] == keys[1, 0]
    assert len({keys[0, 0].item(), keys[0, 1].item(), keys[2, 0].item(), keys[2, 1].item()}) == 4
    assert keys[:, 2].tolist() == [-1, -1, -1]  # no third sentence
    assert report_keys[0] != report_keys[1]  # same sentences, other order: another report
    single, single_report = SentenceTextKeys(max_sentences=3)(ids[1], sids[1])  # one report, unbatched
    assert single.tolist() == keys[1].tolist() and single_report == report_keys[1]
    twin = SentenceTextKeysd(max_sentences=3)({"input_ids": ids, "sentence_ids": sids})
    assert torch.equal(twin["sentence_keys"], keys) and torch.equal(twin["report_key"], report_keys)


def test_same_text_mask_equals_loop_reference():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 4, (6, 3), generator=generator)  # small alphabet: many planted duplicates
    keys[2, 2] = -1
    keys[4, 1:] = -1
    anchors = keys[:, [0, 2]]
    mask = same_text_negatives_mask(anchors, keys)
    assert mask.shape == (2, 6, 6)
    for k in range(2):
        for i in range(6):
            for j in range(6):
                shared = anchors[j, k] >= 0 and any(keys[i, m] == anchors[j, k] for m in range(3))
                assert bool(mask[k, i, j]) == (not shared)


def test_planted_duplicate_is_not_a_local_negative():
    """Report 1 holds report 0's first sentence word for word: image 1 stops being its negative, exactly."""
    generator = torch.Generator().manual_seed(1)
    batch, dim = 4, 8
    image_local = torch.randn(batch, dim, 2, 2, generator=generator)
    sentences = torch.randn(batch, 2, dim, generator=generator)
    sentence_mask = torch.ones(batch, 2, dtype=torch.bool)
    keys = torch.tensor([[7, 8], [9, 7], [10, 11], [12, 13]])
    loss = LocalMILoss(DotCritic(temperature=0.5), "infonce", "max")
    masked = loss(image_local, sentences, sentence_mask, sentence_keys=keys)
    plain = loss(image_local, sentences, sentence_mask)

    per_slot = torch.stack(
        [torch.stack([loss.critic(image_local[i].flatten(1).T, sentences[:, k]).amax(0) for i in range(batch)])
         for k in range(2)]
    )  # K x B x B, image i against report j's sentence k
    expected_mask = torch.ones(2, batch, batch, dtype=torch.bool)
    expected_mask[0, 1, 0] = False  # sentence (report 0, slot 0) is in report 1
    expected_mask[1, 0, 1] = False  # sentence (report 1, slot 1) is in report 0
    assert masked.mi.item() == pytest.approx(infonce_bound(per_slot, expected_mask).item(), abs=1e-5)
    assert plain.mi.item() == pytest.approx(infonce_bound(per_slot).item(), abs=1e-5)
    assert masked.mi.item() != pytest.approx(plain.mi.item(), abs=1e-4)


def test_sampled_sentence_mask_follows_the_sample():
    batch, dim = 3, 4
    image_local = torch.randn(batch, dim, 1, 2, generator=torch.Generator().manual_seed(2))
    sentences = torch.randn(batch, 2, dim, generator=torch.Generator().manual_seed(3))
    sentence_mask = torch.tensor([[True, False], [True, True], [True, False]])
    keys = torch.tensor([[5, -1], [6, 5], [7, -1]])
    loss = LocalMILoss(DotCritic(temperature=1.0), "infonce", "max", "sample")
    torch.manual_seed(0)
    out = loss(image_local, sentences, sentence_mask, sentence_keys=keys)
    index = out.terms["sentence_index"]
    scores = torch.stack(
        [loss.critic(image_local[i].flatten(1).T, sentences[torch.arange(batch), index]).amax(0) for i in range(batch)]
    )[None]  # 1 x B x B
    expected = torch.ones(1, batch, batch, dtype=torch.bool)
    # report 0's only sentence (key 5) is also report 1's second one, and vice versa when slot 1 was drawn
    expected[0, 1, 0] = False
    if index[1] == 1:
        expected[0, 0, 1] = False
    assert out.mi.item() == pytest.approx(infonce_bound(scores, expected).item(), abs=1e-5)


def test_identical_reports_are_not_global_negatives():
    image = torch.randn(3, 5, generator=torch.Generator().manual_seed(4))
    text = torch.randn(3, 5, generator=torch.Generator().manual_seed(5))
    loss = GlobalMILoss(DotCritic(temperature=0.5), "infonce")
    scores = loss.critic(image, text)
    out = loss(image, text, report_keys=torch.tensor([1, 2, 1]))
    expected = torch.tensor([[True, True, False], [True, True, True], [False, True, True]])
    assert out.mi.item() == pytest.approx(infonce_bound(scores, expected).item(), abs=1e-6)
    # two anchors keep one negative each, one keeps two: the bound is at most the mean log candidate count
    assert out.mi.item() <= (4 * math.log(2) + 2 * math.log(3)) / 6 + 1e-6


def test_objective_reads_keys_from_the_targets_and_can_switch_masking_off():
    torch.manual_seed(0)
    pred = {
        "image_local": torch.randn(4, 6, 2, 2),
        "text_sentences": torch.randn(4, 2, 6),
        "sentence_mask": torch.ones(4, 2, dtype=torch.bool),
    }
    targets = {
        "study_id": torch.arange(4),
        "sentence_keys": torch.tensor([[1, 2], [3, 1], [4, 5], [6, 7]]),
        "report_key": torch.arange(4),
    }
    masked = PretrainObjective("local", embed_dim=6)
    plain = PretrainObjective("local", embed_dim=6, mask_identical_text=False)
    plain.load_state_dict(masked.state_dict())
    with_keys = masked(pred, targets).item()
    assert plain(pred, targets).item() == pytest.approx(masked(pred, targets["study_id"]).item(), abs=1e-6)
    assert with_keys != pytest.approx(plain(pred, targets).item(), abs=1e-5)
