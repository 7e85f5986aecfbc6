"""Objectives declared in the recipe: the loss classes declare their inputs, rebuild from their config item,
and the recipe builds what the Python API builds."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from radmi.bundle.paths import bundle_config
from radmi.errors import TrainingError
from radmi.losses.base import OBJECTIVES
from radmi.losses.objectives import PretrainObjective

CASES = [("local", "dot"), ("local", "concat_mlp"), ("global", "bilinear"), ("tvdim", "dot"), ("tvdim", "bilinear")]


def features(batch: int = 4, dim: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "image_local": torch.randn(batch, dim, 2, 2, generator=generator),
        "image_global": torch.randn(batch, dim, generator=generator),
        "image_local_view2": torch.randn(batch, dim, 2, 2, generator=generator),
        "image_global_view2": torch.randn(batch, dim, generator=generator),
        "text_sentences": torch.randn(batch, 3, dim, generator=generator),
        "sentence_mask": torch.ones(batch, 3, dtype=torch.bool),
        "text_global": torch.randn(batch, dim, generator=generator),
    }


def recipe_objective(kind: str, critic: str, dim: int = 6) -> PretrainObjective:
    parser = ConfigParser()
    parser.read_config(str(bundle_config("radmi_cxr_pretrain", "train.json")))
    parser.update({"objective": kind, "critic": critic, "embed_dim": dim})
    return parser.get_parsed_content("loss_def")


@pytest.mark.parametrize(("kind", "critic"), CASES)
def test_recipe_builds_what_the_python_api_builds_and_config_round_trips(kind, critic):
    torch.manual_seed(0)
    from_recipe = recipe_objective(kind, critic)
    from_api = PretrainObjective(kind, embed_dim=6, critic=critic)
    assert from_recipe.kind == kind and type(from_recipe.loss) is OBJECTIVES[kind]
    assert from_recipe.config == from_api.config
    rebuilt = ConfigParser({"objective": from_recipe.config}).get_parsed_content("objective")
    rebuilt.load_state_dict(from_recipe.state_dict())
    targets = {"study_id": torch.arange(4), "sentence_keys": torch.arange(12).view(4, 3), "report_key": torch.arange(4)}
    torch.manual_seed(1)
    expected = from_recipe(features(), targets)
    torch.manual_seed(1)
    assert rebuilt(features(), targets).item() == pytest.approx(expected.item(), abs=1e-6)


def test_losses_declare_what_they_read():
    assert OBJECTIVES["local"].reads == ("image_local", "text_sentences", "sentence_mask")
    assert OBJECTIVES["global"].reads == ("image_global", "text_global")
    assert OBJECTIVES["tvdim"].image_views == 2 and OBJECTIVES["local"].image_views == 1
    assert OBJECTIVES["local"].region_maps and not OBJECTIVES["global"].region_maps
    assert OBJECTIVES["global"].report_maps


def test_missing_network_output_is_a_clear_error():
    pred = features()
    del pred["image_local_view2"]
    with pytest.raises(TrainingError, match="image_view2"):
        PretrainObjective("tvdim", embed_dim=6)(pred, torch.arange(4))
    with pytest.raises(ValueError, match="kind must be one of"):
        PretrainObjective("nonlocal")


def test_unknown_objective_in_the_recipe_names_the_choices():
    with pytest.raises(Exception) as info:
        recipe_objective("nonlocal", "dot")
    cause = info.value.__cause__ or info.value
    assert "no enabled entry 'nonlocal'" in str(cause) and "local" in str(cause)


def test_tvdim_recipe_default_inter_critic_is_a_fixed_cosine():
    objective = recipe_objective("tvdim", "dot")
    critic = objective.loss.inter_critic
    assert float(critic.scale) == 1.0 and not critic.log_scale.requires_grad
