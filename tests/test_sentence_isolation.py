"""Isolated sentence encoding: a sentence vector depends on that sentence's tokens alone."""

from __future__ import annotations

import pytest
import torch

from radmi.models.text import TextEncoder, load_text_encoder, sentence_batch
from radmi.transforms.text import TokenizeReport

REPORT = ["No cardiomegaly.", "There is an opacity in the right lower lung.", "No pneumothorax."]
EDITED = ["No cardiomegaly.", "Small left pleural effusion.", "No pneumothorax."]


@pytest.fixture(scope="module")
def minilm_tokenize():
    return TokenizeReport("offline:all-MiniLM-L6-v2", max_length=48)


def encode(encoder: TextEncoder, tokenize: TokenizeReport, reports: list[list[str]]) -> dict[str, torch.Tensor]:
    ids, mask, sids = (torch.stack(x) for x in zip(*[tokenize(r) for r in reports], strict=True))
    with torch.no_grad():
        return encoder(ids, mask, sids)


def test_isolated_sentences_ignore_the_rest_of_the_report(minilm_tokenize):
    """The recipe's default text path (MiniLM, isolated): edit sentence 2, sentences 1 and 3 stay put."""
    encoder = TextEncoder(max_sentences=4).eval()
    assert encoder.sentence_context == "isolated"
    out = encode(encoder, minilm_tokenize, [REPORT, EDITED])["sentences"]
    torch.testing.assert_close(out[0, 0], out[1, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 2], out[1, 2], atol=1e-5, rtol=0)
    assert (out[0, 1] - out[1, 1]).abs().max() > 0.1


def test_report_context_leaks_the_report_into_every_sentence(minilm_tokenize):
    """The old whole-report mode, kept as an option: the same edit moves the untouched sentences."""
    encoder = TextEncoder(max_sentences=4, sentence_context="report").eval()
    out = encode(encoder, minilm_tokenize, [REPORT, EDITED])["sentences"]
    assert (out[0, 0] - out[1, 0]).abs().max() > 0.05
    assert (out[0, 2] - out[1, 2]).abs().max() > 0.05


def test_isolated_sentence_equals_the_sentence_tokenized_alone(minilm_tokenize):
    """Same vector as running the model on ``[CLS] sentence [SEP]`` and pooling its own tokens, wherever it
    stands in the report; the report vector keeps the whole-report context."""
    isolated = TextEncoder(max_sentences=4).eval()
    whole = TextEncoder(max_sentences=4, sentence_context="report").eval()
    in_report = encode(isolated, minilm_tokenize, [REPORT])
    for k, sentence in enumerate(REPORT):
        alone = encode(whole, minilm_tokenize, [[sentence]])
        torch.testing.assert_close(in_report["sentences"][0, k], alone["sentences"][0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(in_report["global"], encode(whole, minilm_tokenize, [REPORT])["global"])


def test_sentence_batch_equals_loop_reference():
    cls, sep = 101, 102
    input_ids = torch.tensor([[cls, 5, 6, 7, 8, 9, sep, 0, 0], [cls, 11, 12, 13, sep, 0, 0, 0, 0]])
    attention_mask = (torch.arange(9) < torch.tensor([[7], [5]])).long()
    # report 0: s0 = 5 6, s1 = 7, s2 = 8 9 (beyond K = 2, dropped); report 1: s0 = 11 12 13
    sentence_ids = torch.tensor([[-1, 0, 0, 1, 2, 2, -1, -1, -1], [-1, 0, 0, 0, -1, -1, -1, -1, -1]])
    ids, mask, text_mask, slot = sentence_batch(input_ids, attention_mask, sentence_ids, max_sentences=2)
    assert slot.tolist() == [0, 1, 2]  # b * K + k for (0, 0), (0, 1), (1, 0)
    expected = [[cls, 5, 6, sep, 0], [cls, 7, sep, 0, 0], [cls, 11, 12, 13, sep]]
    lengths = [4, 3, 5]
    assert ids.tolist() == expected
    assert mask.tolist() == [[int(c < n) for c in range(5)] for n in lengths]
    assert text_mask.tolist() == [[0 < c < n - 1 for c in range(5)] for n in lengths]


def test_sentence_context_is_saved_and_old_encoders_load_as_report(tmp_path, tiny_text_model_dir):
    import json

    encoder = TextEncoder(tiny_text_model_dir, max_sentences=3)
    saved = encoder.save_pretrained(tmp_path / "text")
    assert load_text_encoder(saved).sentence_context == "isolated"
    config = json.loads((saved / "text_encoder.json").read_text())
    del config["sentence_context"]  # written before the option existed: those pooled the report pass
    (saved / "text_encoder.json").write_text(json.dumps(config))
    assert load_text_encoder(saved).sentence_context == "report"
    with pytest.raises(ValueError, match="sentence_context"):
        TextEncoder(tiny_text_model_dir, sentence_context="paragraph")


def test_isolated_gradients_reach_the_transformer(tiny_text_model_dir):
    encoder = TextEncoder(tiny_text_model_dir, max_sentences=3)
    input_ids = torch.randint(1, 60, (2, 10), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(2, 10, dtype=torch.long)
    sentence_ids = torch.tensor([[-1, 0, 0, 1, 1, 1, 2, 2, -1, -1], [-1, 0, 0, 0, 0, 1, 1, -1, -1, -1]])
    out = encoder(input_ids, attention_mask, sentence_ids)
    assert out["sentence_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(out["sentences"][1, 2], torch.zeros_like(out["sentences"][1, 2]))
    out["sentences"].sum().backward()
    grads = [p.grad for p in encoder.transformer.encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_network_runs_only_the_text_passes_the_objective_reads(tiny_text_model_dir):
    from radmi.losses.global_mi import GlobalMILoss
    from radmi.losses.local_mi import LocalMILoss
    from radmi.models.image import ImageEncoder
    from radmi.models.multimodal import ImageTextModel

    torch.manual_seed(0)
    text = TextEncoder(tiny_text_model_dir, embed_dim=8, max_sentences=3)
    network = ImageTextModel(ImageEncoder("resnet18", embed_dim=8), text).eval()
    calls = []
    text.transformer.register_forward_hook(lambda module, args, out: calls.append(args))
    image = torch.rand(2, 1, 64, 64)
    input_ids = torch.randint(1, 60, (2, 10), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones(2, 10, dtype=torch.long)
    sentence_ids = torch.tensor([[-1, 0, 0, 1, 1, 1, 2, 2, -1, -1], [-1, 0, 0, 0, 0, 1, 1, -1, -1, -1]])
    with torch.no_grad():
        everything = network(image, input_ids, attention_mask, sentence_ids)
        assert len(calls) == 2  # the isolated sentences, then the whole report
        local = network(image, input_ids, attention_mask, sentence_ids, outputs=LocalMILoss.reads)
        assert len(calls) == 3  # the sentences only
        assert "text_global" not in local and "text_tokens" not in local
        torch.testing.assert_close(local["text_sentences"], everything["text_sentences"])
        report_only = network(image, input_ids, attention_mask, sentence_ids, outputs=GlobalMILoss.reads)
        assert len(calls) == 4  # the whole report only
        assert "text_sentences" not in report_only
        torch.testing.assert_close(report_only["text_global"], everything["text_global"])
