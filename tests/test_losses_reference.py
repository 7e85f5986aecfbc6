"""Every vectorized estimator and objective equals a naive per-pair Python loop kept here; gradients flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from radmi.losses.critics import BilinearCritic, ConcatMLPCritic, DotCritic
from radmi.losses.estimators import dv_bound, infonce_bound, jsd_bound, study_negatives_mask
from radmi.losses.global_mi import GlobalMILoss
from radmi.losses.local_mi import LocalMILoss
from radmi.losses.objectives import PretrainObjective
from radmi.losses.tvdim import TVDIMLoss

TOL = 1e-5


# ---- naive references ---------------------------------------------------------------------------------------
def _is_negative(mask, valid, k, i, j) -> bool:
    return i != j and (mask is None or bool(mask[i, j])) and (valid is None or bool(valid[k, j]))


def ref_infonce(scores, mask=None, valid=None) -> float:
    scores = scores if scores.dim() == 3 else scores[None]
    slots, batch, _ = scores.shape
    values = []
    for k in range(slots):
        for a in range(batch):
            if valid is not None and not valid[k, a]:
                continue
            rows = [j for j in range(batch) if j == a or _is_negative(mask, valid, k, a, j)]
            lse = math.log(sum(math.exp(scores[k, a, j].item()) for j in rows))
            values.append(math.log(len(rows)) - (lse - scores[k, a, a].item()))
            columns = [i for i in range(batch) if i == a or (i != a and (mask is None or bool(mask[i, a])))]
            lse = math.log(sum(math.exp(scores[k, i, a].item()) for i in columns))
            values.append(math.log(len(columns)) - (lse - scores[k, a, a].item()))
    return sum(values) / len(values)


def _ref_pos_neg(scores, mask, valid, pos_fn, neg_reduce) -> float:
    scores = scores if scores.dim() == 3 else scores[None]
    slots, batch, _ = scores.shape
    total, weight = 0.0, 0
    for k in range(slots):
        positives = [scores[k, j, j].item() for j in range(batch) if valid is None or valid[k, j]]
        negatives = [
            scores[k, i, j].item()
            for i in range(batch)
            for j in range(batch)
            if _is_negative(mask, valid, k, i, j)
        ]
        if positives and negatives:
            total += len(positives) * (sum(map(pos_fn, positives)) / len(positives) - neg_reduce(negatives))
            weight += len(positives)
    return total / weight


def ref_dv(scores, mask=None, valid=None) -> float:
    return _ref_pos_neg(scores, mask, valid, lambda t: t, lambda n: math.log(sum(map(math.exp, n)) / len(n)))


def _softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def ref_jsd(scores, mask=None, valid=None) -> float:
    return _ref_pos_neg(
        scores, mask, valid, lambda t: -_softplus(-t), lambda n: sum(map(_softplus, n)) / len(n)
    )


REFERENCES = {"infonce": (infonce_bound, ref_infonce), "dv": (dv_bound, ref_dv), "jsd": (jsd_bound, ref_jsd)}


def ref_aggregate(values: list[float], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "mean":
        return sum(values) / len(values)
    return math.log(sum(map(math.exp, values)) / len(values))


def pair_score(critic, v: torch.Tensor, s: torch.Tensor) -> float:
    """The critic on one (v, s) pair: ``D`` and ``D`` -> float."""
    return critic(v[None], s[None])[0, 0].item()


def make_critic(name: str, dim: int):
    torch.manual_seed(3)
    if name == "dot":
        return DotCritic(temperature=0.5)
    if name == "bilinear":
        critic = BilinearCritic(dim, dim)
        torch.nn.init.normal_(critic.weight, std=0.3)
        return critic
    return ConcatMLPCritic(dim, dim, hidden=(8, 4), chunk_pairs=7)  # tiny chunks exercise the chunking


# ---- estimators -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_estimators_equal_loop_reference_with_slots_masks_and_validity(name):
    fast, reference = REFERENCES[name]
    generator = torch.Generator().manual_seed(11)
    for trial in range(5):
        slots, batch = 3, 5
        scores = torch.randn(slots, batch, batch, generator=generator) * 2
        mask = study_negatives_mask(torch.tensor([1, 1, 2, 3, 3 if trial % 2 else 4]))
        valid = torch.rand(slots, batch, generator=generator) > 0.3
        valid[0] = True
        assert fast(scores[0]).item() == pytest.approx(reference(scores[0]), abs=TOL)
        assert fast(scores, mask).item() == pytest.approx(reference(scores, mask), abs=TOL)
        assert fast(scores, mask, valid).item() == pytest.approx(reference(scores, mask, valid), abs=TOL)


# ---- objectives ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("critic_name", ["dot", "bilinear", "concat_mlp"])
@pytest.mark.parametrize("estimator", ["infonce", "dv", "jsd"])
@pytest.mark.parametrize("aggregate", ["max", "mean", "lse"])
def test_local_mi_equals_loop_reference(critic_name, estimator, aggregate):
    generator = torch.Generator().manual_seed(5)
    batch, dim, height, width, slots = 3, 6, 2, 2, 2
    image_local = torch.randn(batch, dim, height, width, generator=generator)
    sentences = torch.randn(batch, slots, dim, generator=generator)
    sentence_mask = torch.tensor([[True, True], [True, False], [True, True]])
    study_ids = torch.tensor([10, 11, 11])
    critic = make_critic(critic_name, dim)
    out = LocalMILoss(critic, estimator, aggregate)(image_local, sentences, sentence_mask, study_ids)

    matrices = torch.zeros(slots, batch, batch)
    for k in range(slots):
        for i in range(batch):
            for j in range(batch):
                region_scores = [
                    pair_score(critic, image_local[i, :, y, x], sentences[j, k])
                    for y in range(height)
                    for x in range(width)
                ]
                matrices[k, i, j] = ref_aggregate(region_scores, aggregate)
    reference = REFERENCES[estimator][1](matrices, study_negatives_mask(study_ids), sentence_mask.T)
    assert out.mi.item() == pytest.approx(reference, abs=TOL)
    assert out.loss.item() == pytest.approx(-reference, abs=TOL)

    expected_map = torch.zeros(batch, slots, height, width)
    for b in range(batch):
        for k in range(slots):
            for y in range(height):
                for x in range(width):
                    expected_map[b, k, y, x] = pair_score(critic, image_local[b, :, y, x], sentences[b, k])
    torch.testing.assert_close(out.scores, expected_map, atol=TOL, rtol=0)
    loss_module = LocalMILoss(critic, estimator, aggregate)
    torch.testing.assert_close(loss_module.score_map(image_local, sentences), expected_map, atol=TOL, rtol=0)


def test_local_mi_sampled_sentence_equals_loop_reference():
    generator = torch.Generator().manual_seed(6)
    batch, dim, slots = 4, 5, 3
    image_local = torch.randn(batch, dim, 2, 3, generator=generator)
    sentences = torch.randn(batch, slots, dim, generator=generator)
    sentence_mask = torch.tensor([[1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    critic = make_critic("bilinear", dim)
    torch.manual_seed(0)
    out = LocalMILoss(critic, "infonce", "max", "sample")(image_local, sentences, sentence_mask)
    index = out.terms["sentence_index"]
    for b in range(3):  # the picked sentence exists (report 3 has none)
        assert sentence_mask[b, index[b]]
    matrix = torch.tensor(
        [
            [
                max(
                    pair_score(critic, image_local[i, :, y, x], sentences[j, index[j]])
                    for y in range(2)
                    for x in range(3)
                )
                for j in range(batch)
            ]
            for i in range(batch)
        ]
    )
    valid = sentence_mask.any(1)[None]
    assert out.mi.item() == pytest.approx(ref_infonce(matrix[None], None, valid), abs=TOL)
    assert out.scores.shape == (batch, 1, 2, 3)


@pytest.mark.parametrize("estimator", ["infonce", "dv", "jsd"])
def test_global_mi_equals_loop_reference(estimator):
    generator = torch.Generator().manual_seed(7)
    image_global, text_global = torch.randn(2, 5, 4, generator=generator)
    critic = make_critic("concat_mlp", 4)
    study_ids = torch.tensor([1, 2, 2, 3, 4])
    out = GlobalMILoss(critic, estimator)(image_global, text_global, study_ids)
    matrix = torch.tensor(
        [[pair_score(critic, image_global[i], text_global[j]) for j in range(5)] for i in range(5)]
    )
    reference = REFERENCES[estimator][1](matrix, study_negatives_mask(study_ids))
    assert out.mi.item() == pytest.approx(reference, abs=TOL)


def ref_ranking(scores: torch.Tensor, margin: float, mask: torch.Tensor, hardest: bool) -> float:
    batch = scores.shape[0]
    image_costs, report_costs = [], []
    for a in range(batch):
        image_costs.append(
            [
                max(0.0, margin - scores[a, a].item() + scores[a, j].item())
                for j in range(batch)
                if j != a and mask[a, j]
            ]
        )
        report_costs.append(
            [
                max(0.0, margin - scores[a, a].item() + scores[i, a].item())
                for i in range(batch)
                if i != a and mask[i, a]
            ]
        )
    if hardest:
        return (
            0.5
            * (sum(max(c, default=0.0) for c in image_costs) + sum(max(c, default=0.0) for c in report_costs))
            / batch
        )
    count = sum(len(c) for c in image_costs)
    return 0.5 * (sum(map(sum, image_costs)) + sum(map(sum, report_costs))) / count


@pytest.mark.parametrize("intra_estimator", ["jsd", "infonce"])
@pytest.mark.parametrize("hardest", [False, True])
def test_tvdim_equals_loop_reference(intra_estimator, hardest):
    generator = torch.Generator().manual_seed(8)
    batch, dim, height, width = 4, 5, 2, 2
    local1, local2 = torch.randn(2, batch, dim, height, width, generator=generator)
    global1, global2, text = torch.randn(3, batch, dim, generator=generator)
    study_ids = torch.tensor([3, 3, 4, 5])
    intra, inter = make_critic("concat_mlp", dim), make_critic("bilinear", dim)
    loss = TVDIMLoss(
        intra,
        inter,
        intra_estimator,
        margin=0.3,
        intra_weight=0.7,
        inter_weight=1.5,
        hardest_negative=hardest,
    )
    out = loss(local1, global1, local2, global2, text, study_ids)

    mask = study_negatives_mask(study_ids)
    reference_estimator = REFERENCES[intra_estimator][1]

    def ref_local_global(local, other):
        per_region = torch.tensor(
            [
                [[pair_score(intra, local[i, :, y, x], other[j]) for j in range(batch)] for i in range(batch)]
                for y in range(height)
                for x in range(width)
            ]
        )
        return reference_estimator(per_region, mask)

    mi_intra = 0.5 * (ref_local_global(local1, global2) + ref_local_global(local2, global1))
    inter_scores = torch.tensor(
        [[pair_score(inter, global1[i], text[j]) for j in range(batch)] for i in range(batch)]
    )
    ranking = ref_ranking(inter_scores, 0.3, mask, hardest)
    assert out.terms["mi_intra"].item() == pytest.approx(mi_intra, abs=TOL)
    assert out.terms["ranking"].item() == pytest.approx(ranking, abs=TOL)
    assert out.loss.item() == pytest.approx(-0.7 * mi_intra + 1.5 * ranking, abs=TOL)
    assert out.terms["mi_inter"].item() == pytest.approx(ref_infonce(inter_scores, mask), abs=TOL)


# ---- critics ------------------------------------------------------------------------------------------------
def test_concat_mlp_chunking_and_checkpointing_change_nothing():
    generator = torch.Generator().manual_seed(9)
    v = torch.randn(13, 6, generator=generator, requires_grad=True)
    s = torch.randn(9, 6, generator=generator, requires_grad=True)
    torch.manual_seed(0)
    whole = ConcatMLPCritic(6, 6, hidden=(10, 5), chunk_pairs=10**6, checkpoint=False)
    chunked = ConcatMLPCritic(6, 6, hidden=(10, 5), chunk_pairs=20, checkpoint=True)
    chunked.load_state_dict(whole.state_dict())
    expected = whole(v, s)
    first_layer = torch.cat([v[:, None].expand(-1, 9, -1), s[None].expand(13, -1, -1)], dim=-1)  # [v; s]
    weight = torch.cat([whole.first_v.weight, whole.first_s.weight], dim=1)
    concat_reference = whole.rest(F.linear(first_layer, weight, whole.first_v.bias)).squeeze(-1)
    torch.testing.assert_close(expected, concat_reference, atol=TOL, rtol=0)  # the separable first layer
    got = chunked(v, s)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    grads_expected = torch.autograd.grad(expected.square().sum(), [v, s, whole.first_v.weight])
    grads_got = torch.autograd.grad(got.square().sum(), [v, s, chunked.first_v.weight])
    for a, b in zip(grads_got, grads_expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    paired = chunked.paired(v[:12].view(3, 4, 6), s[:6].view(3, 2, 6))
    for b in range(3):
        torch.testing.assert_close(
            paired[b], expected[4 * b : 4 * b + 4, 2 * b : 2 * b + 2], atol=TOL, rtol=0
        )


def test_dot_critic_is_cosine_over_temperature():
    v, s = torch.randn(2, 3, 4)
    critic = DotCritic(temperature=0.25, learnable_temperature=False)
    expected = F.cosine_similarity(v[:, None], s[None], dim=-1) / 0.25
    torch.testing.assert_close(critic(v, s), expected, atol=TOL, rtol=0)
    assert not list(critic.parameters())
    assert len(list(DotCritic().parameters())) == 1


# ---- gradients through the whole model ------------------------------------------------------------------
# (tiny_text_model_dir comes from conftest.py)
@pytest.mark.parametrize("kind", ["local", "global", "tvdim"])
def test_gradients_flow_to_both_encoders_and_the_critic(tiny_text_model_dir, kind):
    from radmi.models.image import ImageEncoder
    from radmi.models.multimodal import ImageTextModel
    from radmi.models.text import TextEncoder

    torch.manual_seed(0)
    network = ImageTextModel(
        ImageEncoder("resnet18", embed_dim=8, local_stride=16),
        TextEncoder(tiny_text_model_dir, embed_dim=8, max_sentences=3),
    )
    objective = PretrainObjective(kind, embed_dim=8, critic="bilinear")
    batch, tokens = 3, 12
    input_ids = torch.randint(1, 64, (batch, tokens))
    attention_mask = torch.ones(batch, tokens, dtype=torch.long)
    sentence_ids = torch.tensor([[-1] + [0] * 5 + [1] * 5 + [-1]] * batch)
    view2 = torch.rand(batch, 1, 64, 64) if kind == "tvdim" else None
    pred = network(
        torch.rand(batch, 1, 64, 64),
        input_ids=input_ids,
        attention_mask=attention_mask,
        sentence_ids=sentence_ids,
        image_view2=view2,
    )
    loss = objective(pred, torch.tensor([1, 2, 3]))
    loss.backward()
    assert objective.latest["loss"] == pytest.approx(loss.item())
    # every image-encoder parameter is trained by every objective (nothing idle for DDP)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.image_encoder.parameters())
    text_embeddings = network.text_encoder.transformer.embeddings.word_embeddings.weight.grad
    assert text_embeddings is not None and text_embeddings.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.parameters())
