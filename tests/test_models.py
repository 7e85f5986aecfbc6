"""Encoders, heads and the pretraining network: shapes, sentence pooling, freezing, persistence, offline model."""

from __future__ import annotations

import json

import pytest
import torch

from radmi.errors import ModelLoadError
from radmi.models.heads import FindingClassifier, ProjectionHead, load_finding_classifier
from radmi.models.image import ImageEncoder, load_image_encoder
from radmi.models.multimodal import ImageTextModel
from radmi.models.text import TextEncoder, load_text_encoder, pool_sentences


def token_batch(batch: int = 2, length: int = 12):
    input_ids = torch.randint(1, 64, (batch, length), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, 9:] = 0
    # [CLS] s0 s0 s0 s1 s1 s2 s2 s2 [SEP] pad pad ; the second report has two sentences and padding
    sentence_ids = torch.tensor(
        [[-1, 0, 0, 0, 1, 1, 2, 2, 2, -1, -1, -1], [-1, 0, 0, 1, 1, 1, 1, -1, -1, -1, -1, -1]]
    )
    return input_ids, attention_mask, sentence_ids


# ---- image encoder -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "densenet121"])
def test_image_encoder_shapes(backbone):
    for stride in (16, 32):
        encoder = ImageEncoder(backbone, embed_dim=12, local_stride=stride).eval()
        with torch.no_grad():
            global_embedding, local = encoder(torch.rand(2, 1, 64, 96))
        assert global_embedding.shape == (2, 12)
        assert local.shape == (2, 12, 64 // stride, 96 // stride)


def test_global_embedding_is_the_mean_of_the_local_map_and_strides_share_weights():
    torch.manual_seed(0)
    coarse = ImageEncoder("resnet18", embed_dim=8, local_stride=32).eval()
    fine = ImageEncoder("resnet18", embed_dim=8, local_stride=16).eval()
    fine.load_state_dict(coarse.state_dict())  # dilation changes no parameter shape
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        global_embedding, local = fine(x)
        coarse_global, _ = coarse(x)
    torch.testing.assert_close(global_embedding, local.mean(dim=(2, 3)))
    assert local.shape[-2:] == (4, 4)
    assert not torch.allclose(global_embedding, coarse_global)  # a different receptive-field layout


def test_image_encoder_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet18", embed_dim=8).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = encoder(x)
        encoder_cl = encoder.to(memory_format=torch.channels_last)
        got = encoder_cl(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_image_encoder_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet18", embed_dim=8, local_stride=32).eval()
    encoder.save(tmp_path / "run" / "models")
    assert json.loads((tmp_path / "run" / "models" / "image_encoder.json").read_text()) == encoder.config
    x = torch.rand(1, 1, 64, 64)
    for source in (tmp_path / "run", tmp_path / "run" / "models" / "image_encoder.pt"):
        loaded = load_image_encoder(source).eval()
        with torch.no_grad():
            for a, b in zip(loaded(x), encoder(x), strict=True):
                torch.testing.assert_close(a, b, atol=0, rtol=0)
    # pretrained_path starts a new encoder from saved weights
    started = ImageEncoder("resnet18", embed_dim=8, local_stride=32, pretrained_path=tmp_path / "run")
    torch.testing.assert_close(started.local_projection.weight, encoder.local_projection.weight)


def test_image_encoder_loads_a_monai_backbone_state_dict(tmp_path):
    from monai.networks.nets import resnet18

    torch.manual_seed(1)
    backbone = resnet18(spatial_dims=2, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, num_classes=3)
    torch.save(backbone.state_dict(), tmp_path / "monai_resnet18.pt")
    encoder = ImageEncoder(
        "resnet18", embed_dim=8, local_stride=16, pretrained_path=tmp_path / "monai_resnet18.pt"
    )
    torch.testing.assert_close(encoder.features.conv1.weight, backbone.conv1.weight)
    torch.testing.assert_close(encoder.features.layer4[1].conv2.weight, backbone.layer4[1].conv2.weight)
    with pytest.raises(ModelLoadError, match="monai_resnet18.pt"):
        ImageEncoder("resnet50", embed_dim=8, pretrained_path=tmp_path / "monai_resnet18.pt")


def test_image_encoder_load_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no image encoder weights"):
        load_image_encoder(tmp_path)
    ImageEncoder("resnet18", embed_dim=4).save(tmp_path)
    (tmp_path / "image_encoder.json").unlink()
    with pytest.raises(ModelLoadError, match="image_encoder.json"):
        load_image_encoder(tmp_path)
    (tmp_path / "image_encoder.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "image_encoder.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_image_encoder(tmp_path)


# ---- text encoder --------------------------------------------------------------------------------------------
def test_sentence_pooling_equals_loop_reference():
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randn(3, 10, 5, generator=generator)
    sentence_ids = torch.randint(-1, 4, (3, 10), generator=generator)
    sentence_ids[2] = -1  # a report without sentences
    sentences, mask = pool_sentences(tokens, sentence_ids, max_sentences=3)  # slot 3 is beyond K and dropped
    for b in range(3):
        for k in range(3):
            members = [tokens[b, t] for t in range(10) if sentence_ids[b, t] == k]
            assert mask[b, k].item() == bool(members)
            expected = torch.stack(members).mean(0) if members else torch.zeros(5)
            torch.testing.assert_close(sentences[b, k], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_encoder_outputs(tiny_text_model_dir, pooling):
    encoder = TextEncoder(
        tiny_text_model_dir, embed_dim=6, max_sentences=4, pooling=pooling, sentence_context="report"
    ).eval()
    input_ids, attention_mask, sentence_ids = token_batch()
    with torch.no_grad():
        out = encoder(input_ids, attention_mask, sentence_ids)
    assert out["tokens"].shape == (2, 12, 6)
    assert out["sentences"].shape == (2, 4, 6)
    assert out["sentence_mask"].tolist() == [[True, True, True, False], [True, True, False, False]]
    torch.testing.assert_close(out["sentences"][1, 1], out["tokens"][1, 3:7].mean(0))
    expected_global = out["tokens"][:, 0] if pooling == "cls" else out["tokens"][1, :9].mean(0)
    torch.testing.assert_close(out["global"] if pooling == "cls" else out["global"][1], expected_global)


def test_frozen_text_layers_stay_frozen(tiny_text_model_dir):
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_text_model_dir, freeze_embeddings=True, freeze_layers=1)
    transformer = encoder.transformer
    frozen = {
        name: p.detach().clone()
        for name, p in transformer.named_parameters()
        if name.startswith(("embeddings.", "encoder.layer.0."))
    }
    assert frozen and not any(p.requires_grad for n, p in transformer.named_parameters() if n in frozen)
    trainable_before = transformer.encoder.layer[1].output.dense.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.1)
    out = encoder(*token_batch())
    out["sentences"].square().sum().backward()
    optimizer.step()
    for name, p in transformer.named_parameters():
        if name in frozen:
            torch.testing.assert_close(p, frozen[name], atol=0, rtol=0)
    assert not torch.equal(transformer.encoder.layer[1].output.dense.weight, trainable_before)
    with pytest.raises(ValueError, match="freeze_layers"):
        TextEncoder(tiny_text_model_dir, freeze_layers=3)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_text_model_dir):
    plain = TextEncoder(tiny_text_model_dir).train()
    checkpointed = TextEncoder(tiny_text_model_dir, gradient_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    for module in (plain, checkpointed):
        torch.manual_seed(0)  # the same dropout masks
        module(*token_batch())["global"].sum().backward()
    a = plain.transformer.encoder.layer[0].attention.self.query.weight.grad
    b = checkpointed.transformer.encoder.layer[0].attention.self.query.weight.grad
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_text_encoder_save_load_round_trip(tiny_text_model_dir, tmp_path):
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_text_model_dir, embed_dim=5, max_sentences=3, pooling="mean").eval()
    encoder.save_pretrained(tmp_path / "text_encoder")
    loaded = load_text_encoder(tmp_path / "text_encoder").eval()
    with torch.no_grad():
        a, b = encoder(*token_batch()), loaded(*token_batch())
    for key in ("tokens", "sentences", "global"):
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    assert loaded.max_sentences == 3 and loaded.pooling == "mean"


def test_offline_minilm_loads_and_encodes_a_report():
    from radmi.models.hub import load_tokenizer

    encoder = TextEncoder(max_sentences=4).eval()
    assert encoder.embed_dim == 384
    tokenizer = load_tokenizer("offline:all-MiniLM-L6-v2")
    batch = tokenizer(["no acute cardiopulmonary process."], return_tensors="pt")
    sentence_ids = torch.zeros_like(batch["input_ids"])
    sentence_ids[:, 0] = sentence_ids[:, -1] = -1
    with torch.no_grad():
        out = encoder(batch["input_ids"], batch["attention_mask"], sentence_ids)
    assert out["sentences"].shape == (1, 4, 384)
    assert out["sentence_mask"].tolist() == [[True, False, False, False]]
    assert torch.isfinite(out["global"]).all()


# ---- heads and the pretraining network -----------------------------------------------------------------------
def test_projection_head_shapes():
    assert ProjectionHead(7, 3)(torch.zeros(2, 5, 7)).shape == (2, 5, 3)
    assert len(ProjectionHead(7, 3, hidden=(4,)).layers) == 3


def test_finding_classifier_tensor_forward_edema_head_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = FindingClassifier({"backbone": "resnet18", "embed_dim": 8}, num_labels=14, edema_classes=4).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        logits = model(x)
        heads = model.forward_all(x)
    assert logits.shape == (2, 14) and heads["edema"].shape == (2, 4)
    torch.testing.assert_close(heads["findings"], logits)
    model.save(tmp_path / "models")
    assert json.loads((tmp_path / "models" / "model.json").read_text()) == model.config
    loaded = load_finding_classifier(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), logits, atol=0, rtol=0)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), logits, atol=1e-5, rtol=1e-5)


def test_linear_probe_freezes_the_encoder_and_its_batch_norm():
    model = FindingClassifier(ImageEncoder("resnet18", embed_dim=8), freeze_encoder=True).train()
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert model.findings_head.weight.requires_grad
    assert not model.image_encoder.training
    running_mean = model.image_encoder.features.bn1.running_mean.clone()
    model(torch.rand(2, 1, 64, 64))
    torch.testing.assert_close(model.image_encoder.features.bn1.running_mean, running_mean, atol=0, rtol=0)


def test_image_text_model_outputs_the_contract_keys(tiny_text_model_dir):
    network = ImageTextModel(
        ImageEncoder("resnet18", embed_dim=16, local_stride=32),
        TextEncoder(tiny_text_model_dir, max_sentences=3),
    ).eval()
    input_ids, attention_mask, sentence_ids = token_batch()
    with torch.no_grad():
        out = network(
            torch.rand(2, 1, 64, 64),
            input_ids=input_ids,
            attention_mask=attention_mask,
            sentence_ids=sentence_ids,
            image_view2=torch.rand(2, 1, 64, 64),
        )
    shapes = {key: tuple(value.shape) for key, value in out.items()}
    assert shapes == {
        "image_global": (2, 16),
        "image_local": (2, 16, 2, 2),
        "text_tokens": (2, 12, 16),
        "text_sentences": (2, 3, 16),
        "sentence_mask": (2, 3),
        "text_global": (2, 16),
        "image_global_view2": (2, 16),
        "image_local_view2": (2, 16, 2, 2),
    }
    assert out["sentence_mask"].dtype == torch.bool
    with pytest.raises(ValueError, match="embed_dim"):
        ImageTextModel(ImageEncoder("resnet18", embed_dim=8), TextEncoder(tiny_text_model_dir))
