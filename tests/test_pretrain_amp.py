"""Mixed precision and channels-last: the GradScaler logic on the CPU, the CUDA paths where a GPU is present.

The CUDA tests run the recipe end to end on the GPU and look inside with forward hooks: an early convolution
must compute in the autocast dtype and produce channels-last activations, fp16 must bring an enabled
GradScaler (saved in the checkpoint) and bf16 must not. Without a GPU they are skipped (CI has none).
"""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from pretrain_data import TINY_OVERRIDES, prepare_tiny
from torch import nn

from radmi.bundle.paths import bundle_config
from radmi.engines.checkpoint import latest_checkpoint
from radmi.engines.distributed import unwrap
from radmi.engines.handlers import GradientClipping

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return prepare_tiny(tmp_path_factory.mktemp("tiny"))


# ---- GradScaler handling of the clipping handler (device-independent, run on the CPU) -------------------------
def _engine_with_scaler(model: nn.Module, scale: float) -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.amp = True
    engine.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    engine.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine.state.iteration, engine.state.epoch = 1, 1
    return engine


def test_clipping_unscales_fp16_gradients_before_clipping_them():
    torch.manual_seed(0)
    model, reference = nn.Linear(4, 3), nn.Linear(4, 3)
    reference.load_state_dict(model.state_dict())
    inputs = torch.randn(8, 4)
    engine = _engine_with_scaler(model, scale=1024.0)

    engine.scaler.scale(model(inputs).pow(2).sum()).backward()
    GradientClipping(model.parameters, max_norm=0.5)(engine)
    reference(inputs).pow(2).sum().backward()
    torch.nn.utils.clip_grad_norm_(list(reference.parameters()), 0.5)

    # the clipped gradients are those of the unscaled loss, and the norm recorded is the unscaled one
    for clipped, expected in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(clipped.grad, expected.grad)
    total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert float(total) == pytest.approx(0.5, rel=1e-5) and engine.state.grad_norm > 0.5
    # the scaler knows it has unscaled already: its step applies the gradients as they are
    before = [p.detach().clone() for p in model.parameters()]
    engine.scaler.step(engine.optimizer)
    for old, new, expected in zip(before, model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(new.detach(), old - 0.1 * expected.grad)


def test_an_inf_fp16_gradient_skips_the_step_instead_of_raising():
    model = nn.Linear(4, 3)
    engine = _engine_with_scaler(model, scale=2.0**16)
    engine.scaler.scale(model(torch.randn(2, 4)).sum()).backward()
    model.weight.grad[0, 0] = float("inf")  # an fp16 overflow

    GradientClipping(model.parameters, max_norm=1.0)(engine)  # no TrainingError: the scaler handles it
    before = model.weight.detach().clone()
    engine.scaler.step(engine.optimizer)
    engine.scaler.update()
    assert torch.equal(model.weight.detach(), before)
    assert engine.scaler.get_scale() == 2.0**15


# ---- the recipe on a device, with probes ------------------------------------------------------------------
def _first_conv(module: nn.Module, min_in_channels: int) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d) and m.in_channels >= min_in_channels)


def _run_recipe_with_probes(tiny: dict, out, amp: str, channels_last: bool = True) -> dict:
    """Run the pretraining recipe for one epoch; returns what an early convolution saw, and the trainer."""
    from monai.bundle import ConfigWorkflow

    overrides = dict(TINY_OVERRIDES, text_model=str(tiny["bert"]), checkpoint_every=2, amp=amp)
    overrides["channels_last"] = channels_last
    workflow = ConfigWorkflow(
        config_file=str(bundle_config("radmi_cxr_pretrain")),
        workflow_type="train",
        logging_file=False,
        dataset_dir=str(tiny["cache"]),
        output_dir=str(out),
        epochs=1,
        **overrides,
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    encoder = unwrap(workflow.parser.get_parsed_content("network")).image_encoder
    # a 1-channel tensor is channels-last and contiguous at once; probe the first conv with a wider input
    conv = _first_conv(encoder, min_in_channels=2)
    seen: dict = {"weight_channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last)}

    def probe(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            seen.setdefault("dtype", output.dtype)
            seen.setdefault("channels_last", output.is_contiguous(memory_format=torch.channels_last))
            seen.setdefault("contiguous", output.is_contiguous())

    conv.register_forward_hook(probe)
    try:
        workflow.run()
    finally:
        workflow.finalize()
    seen["trainer"] = trainer
    seen["checkpoint"] = torch.load(
        latest_checkpoint(out / "checkpoints"), map_location="cpu", weights_only=True
    )
    return seen


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_on_the_cpu_the_recipe_trains_in_float32_without_a_scaler(tiny, tmp_path):
    seen = _run_recipe_with_probes(tiny, tmp_path / "run", amp="bf16")
    assert seen["dtype"] == torch.float32
    assert seen["contiguous"] and not seen["weight_channels_last"]  # channels_last is for CUDA only
    assert not seen["trainer"].amp and "scaler" not in seen["checkpoint"]
    assert _finite(seen["checkpoint"]["network"])


@needs_cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_on_cuda_the_recipe_autocasts_and_runs_channels_last(tiny, tmp_path, amp):
    seen = _run_recipe_with_probes(tiny, tmp_path / "run", amp=amp)
    assert seen["dtype"] == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert seen["weight_channels_last"] and seen["channels_last"] and not seen["contiguous"]
    trainer = seen["trainer"]
    assert trainer.amp and trainer.scaler.is_enabled() == (amp == "fp16")
    assert ("scaler" in seen["checkpoint"]) == (amp == "fp16")
    assert _finite(seen["checkpoint"]["network"]) and _finite(seen["checkpoint"]["objective"])


@needs_cuda
def test_on_cuda_channels_last_can_be_switched_off(tiny, tmp_path):
    seen = _run_recipe_with_probes(tiny, tmp_path / "run", amp="bf16", channels_last=False)
    assert seen["contiguous"] and not seen["weight_channels_last"]
