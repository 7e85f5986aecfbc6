"""MI estimators against analytic values: correlated Gaussians, the InfoNCE ceiling, the same-study mask."""

from __future__ import annotations

import math

import pytest
import torch

from radmi.losses.critics import ConcatMLPCritic
from radmi.losses.estimators import dv_bound, infonce_bound, jsd_bound, study_negatives_mask


def gaussian_pairs(
    n: int, dim: int, rho: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of (x, y) in R^dim, each coordinate pair standard normal with correlation rho."""
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return x, y


def true_mi(dim: int, rho: float) -> float:
    return -dim / 2 * math.log(1 - rho**2)


def optimal_critic(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """log p(x_i, y_j) / (p(x_i) p(y_j)) for every pair: the log density ratio, B x B."""
    c = 1 - rho**2
    xx = (x**2).sum(-1, keepdim=True)
    yy = (y**2).sum(-1).unsqueeze(0)
    return -x.shape[1] / 2 * math.log(c) - (rho**2 * (xx + yy) - 2 * rho * (x @ y.T)) / (2 * c)


@pytest.mark.parametrize("estimator", [infonce_bound, dv_bound])
def test_optimal_critic_recovers_gaussian_mi(estimator):
    # d = 2, rho = 0.5: MI = 0.288 nats << log 128 = 4.85, where InfoNCE is nearly tight.
    # 200 batches: the standard error of the mean is about 0.005 nats, so 0.02 is a 4-sigma tolerance.
    dim, rho, batch = 2, 0.5, 128
    generator = torch.Generator().manual_seed(0)
    estimates = [
        estimator(optimal_critic(*gaussian_pairs(batch, dim, rho, generator), rho)) for _ in range(200)
    ]
    assert torch.stack(estimates).mean().item() == pytest.approx(true_mi(dim, rho), abs=0.02)


def test_infonce_never_exceeds_log_batch_size():
    # MI = 19.6 nats >> log B: the bound saturates just below log B and never passes it
    dim, rho, batch = 10, 0.99, 32
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        scores = optimal_critic(*gaussian_pairs(batch, dim, rho, generator), rho)
        estimate = infonce_bound(scores).item()
        assert estimate <= math.log(batch) + 1e-6
    assert estimate > math.log(batch) - 0.1
    huge_diagonal = torch.eye(batch) * 1e4
    assert infonce_bound(huge_diagonal).item() == pytest.approx(math.log(batch), abs=1e-6)
    mask = study_negatives_mask(torch.arange(batch) // 2)
    assert infonce_bound(huge_diagonal, mask).item() <= math.log(batch)


def test_infonce_closed_form_without_mask():
    # scores a on the diagonal, 0 elsewhere: CE = -a + log(e^a + B - 1) for every anchor
    batch, a = 6, 1.7
    scores = torch.full((batch, batch), 0.0) + torch.eye(batch) * a
    expected = math.log(batch) - (-a + math.log(math.exp(a) + batch - 1))
    assert infonce_bound(scores).item() == pytest.approx(expected, abs=1e-6)


def test_same_study_mask_changes_infonce_exactly():
    # items 0 and 1 share a study: each loses one candidate, so n = B - 1 for them and B for the rest
    batch, a = 5, 1.3
    scores = torch.eye(batch) * a
    mask = study_negatives_mask(torch.tensor([7, 7, 8, 9, 10]))

    def per_anchor(n: int) -> float:
        return math.log(n) - (-a + math.log(math.exp(a) + n - 1))

    expected = (2 * per_anchor(batch - 1) + 3 * per_anchor(batch)) / 5  # the same in both directions
    assert infonce_bound(scores, mask).item() == pytest.approx(expected, abs=1e-6)
    # whatever the excluded pair scores, the masked estimate does not move; the unmasked one does
    tampered = scores.clone()
    tampered[0, 1] = tampered[1, 0] = 50.0
    assert infonce_bound(tampered, mask).item() == pytest.approx(expected, abs=1e-6)
    assert infonce_bound(tampered).item() < infonce_bound(scores).item() - 1.0


def test_same_study_mask_changes_dv_and_jsd_exactly():
    batch = 4
    scores = torch.arange(batch * batch, dtype=torch.float32).view(batch, batch) / 10
    mask = study_negatives_mask(["a", "a", "b", "c"])
    usable = ~torch.eye(batch, dtype=torch.bool)
    usable[0, 1] = usable[1, 0] = False
    negatives = scores[usable]
    positives = scores.diagonal()
    expected_dv = positives.mean() - torch.log(torch.exp(negatives).mean())
    expected_jsd = (-torch.nn.functional.softplus(-positives)).mean() - torch.nn.functional.softplus(
        negatives
    ).mean()
    assert dv_bound(scores, mask).item() == pytest.approx(expected_dv.item(), abs=1e-6)
    assert jsd_bound(scores, mask).item() == pytest.approx(expected_jsd.item(), abs=1e-6)
    assert dv_bound(scores).item() != pytest.approx(expected_dv.item(), abs=1e-3)


def test_dv_is_stable_for_large_scores():
    scores = torch.randn(8, 8) + 1e4  # exp would overflow without the log-mean-exp
    value = dv_bound(scores)
    assert torch.isfinite(value)
    shifted = dv_bound(scores - 1e4)
    assert value.item() == pytest.approx(shifted.item(), abs=1e-2)  # DV is invariant to a constant shift


def test_estimators_are_float32_under_bfloat16_scores():
    scores = (torch.randn(6, 6) * 3).to(torch.bfloat16)
    for estimator in (infonce_bound, dv_bound, jsd_bound):
        value = estimator(scores)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(estimator(scores.float()).item(), abs=1e-5)


def test_trained_critic_recovers_gaussian_mi():
    # the authors' concat-MLP critic trained with InfoNCE on 1-d Gaussians with rho = 0.8 (MI = 0.511 nats)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    dim, rho, batch = 1, 0.8, 128
    critic = ConcatMLPCritic(dim, dim, hidden=(16, 16), checkpoint=False)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(200):
        x, y = (t.float() for t in gaussian_pairs(batch, dim, rho, generator))
        loss = -infonce_bound(critic(x, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        estimates = [
            infonce_bound(critic(*(t.float() for t in gaussian_pairs(batch, dim, rho, generator))))
            for _ in range(50)
        ]
    assert torch.stack(estimates).mean().item() == pytest.approx(true_mi(dim, rho), abs=0.08)


@pytest.mark.parametrize("estimator", [infonce_bound, dv_bound, jsd_bound])
def test_nothing_to_estimate_gives_zero_and_finite_gradients(estimator):
    scores = torch.randn(2, 3, 3, requires_grad=True)
    value = estimator(scores, None, torch.zeros(2, 3, dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(scores.grad).all()
    single = torch.randn(1, 1, requires_grad=True)  # B = 1: no negatives at all
    assert torch.isfinite(estimator(single)).item()
