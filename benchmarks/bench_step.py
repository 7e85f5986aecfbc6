"""Time one pretraining step (forward, backward, optimizer step) in five forms.

- (a) encoders only: the image and text encoders with a trivial loss on their outputs, the text encoder in
  whole-report mode (one transformer pass; the baseline);
- (a_iso) encoders only, sentences encoded in isolation (``sentence_context="isolated"``: a second pass over
  the re-batched sentences);
- (b) the recipe's local MI: isolated sentences, the text keys of the identical-text mask computed from the
  token ids, ``PretrainObjective("local")`` with that mask; as in the recipe, the network is told what the
  objective reads, so the whole-report text pass (needed by global MI, not by local MI) is skipped;
- (b_report) the same local MI on whole-report sentence vectors (the pre-isolation recipe);
- (c) encoders + TVDIM (``PretrainObjective("tvdim")``, so the image encoder also sees a second view).

Prints the median step time and image-report pairs per second of each form, the ratio b/a (throughput of
(b) over (a); 1.0 = local MI with isolated sentences is free), the cost of isolation (a_iso/a, b/b_report) and
the share of the step (b) spends in the local-MI loss. The forms are timed in interleaved rounds so that load
from other processes hits them alike.

CPU example (small)::

    OMP_NUM_THREADS=1 python benchmarks/bench_step.py --device cpu --backbone resnet18 --batch-size 8 \\
        --image-size 128 --tokens 64

GPU target (b/a >= 0.9; BERT-base-sized text model built from its config, no download)::

    python benchmarks/bench_step.py --device cuda --amp bf16 --channels-last --backbone resnet50 \\
        --batch-size 48 --image-size 224 --text-model bert-base-random --tokens 128 --sentences 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

from radmi.losses.objectives import PretrainObjective
from radmi.models.image import BACKBONES, ImageEncoder
from radmi.models.multimodal import ImageTextModel
from radmi.models.text import DEFAULT_TEXT_MODEL, TextEncoder
from radmi.transforms.text import SentenceTextKeys

BERT_BASE_RANDOM = "bert-base-random"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="images and the CNN in channels_last")
    parser.add_argument("--backbone", choices=BACKBONES, default="resnet18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128, help="square image side, pixels")
    parser.add_argument(
        "--text-model",
        default=DEFAULT_TEXT_MODEL,
        help=f"model name or directory; '{BERT_BASE_RANDOM}' builds a randomly initialized BERT-base (768-d, 12 layers)",
    )
    parser.add_argument("--tokens", type=int, default=64, help="T, tokens per report")
    parser.add_argument("--sentences", type=int, default=8, help="K, sentences per report")
    parser.add_argument("--local-stride", type=int, choices=[16, 32], default=16)
    parser.add_argument("--critic", choices=["dot", "bilinear", "concat_mlp"], default="dot")
    parser.add_argument("--estimator", choices=["infonce", "dv", "jsd"], default="infonce")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each times every form once)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS)"
    )
    return parser.parse_args(argv)


def text_model_path(name: str, workdir: str) -> str:
    if name != BERT_BASE_RANDOM:
        return name
    from transformers import BertConfig, BertModel

    directory = os.path.join(workdir, "bert-base-random")
    BertModel(BertConfig()).save_pretrained(directory)  # BertConfig() defaults are BERT-base
    return directory


def synthetic_batch(
    args: argparse.Namespace, vocab_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Random images and token ids; each report has K equal sentences between [CLS] and [SEP]."""
    batch, length = args.batch_size, args.tokens
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    images = [
        torch.rand(batch, 1, args.image_size, args.image_size, device=device).contiguous(
            memory_format=memory_format
        )
        for _ in range(2)
    ]
    sentence_ids = torch.full((batch, length), -1, dtype=torch.long)
    body = torch.arange(length - 2) * args.sentences // (length - 2)
    sentence_ids[:, 1:-1] = body
    return {
        "image": images[0],
        "image_view2": images[1],
        "input_ids": torch.randint(1000, vocab_size, (batch, length), device=device),
        "attention_mask": torch.ones(batch, length, dtype=torch.long, device=device),
        "sentence_ids": sentence_ids.to(device),
        "study_ids": torch.arange(batch, device=device),
    }


def encoders_only_loss(pred: dict[str, torch.Tensor], _study_ids: torch.Tensor) -> torch.Tensor:
    """A loss that touches every encoder output and costs nothing itself (form a)."""
    return sum(
        pred[key].float().mean() for key in ("image_global", "image_local", "text_tokens", "text_global")
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        text_encoder = TextEncoder(text_model_path(args.text_model, workdir), max_sentences=args.sentences)
    embed_dim = text_encoder.embed_dim
    image_encoder = ImageEncoder(args.backbone, embed_dim=embed_dim, local_stride=args.local_stride)
    network = ImageTextModel(image_encoder, text_encoder).to(device)
    if args.channels_last:
        network.image_encoder.to(memory_format=torch.channels_last)
    local_mi = PretrainObjective("local", embed_dim, critic=args.critic, estimator=args.estimator).to(device)
    objectives = {
        "a_encoders": encoders_only_loss,
        "a_iso_encoders": encoders_only_loss,
        "b_local_mi": local_mi,
        "b_report_local_mi": local_mi,
        "c_tvdim": PretrainObjective("tvdim", embed_dim).to(device),
    }
    # text mode per form: whole-report pass for the baseline and the old recipe, isolated sentences otherwise
    contexts = {"a_encoders": "report", "b_report_local_mi": "report", "c_tvdim": "report"}
    text_keys = SentenceTextKeys(args.sentences)
    parameters = list(network.parameters())
    for objective in {id(o): o for o in objectives.values()}.values():
        if isinstance(objective, torch.nn.Module):
            parameters += list(objective.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    batch = synthetic_batch(args, text_encoder.transformer.config.vocab_size, device)
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if args.amp == "bf16"
        else nullcontext
    )

    def step(form: str) -> float:
        synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        network.text_encoder.sentence_context = contexts.get(form, "isolated")
        targets = batch["study_ids"]
        if form.startswith("b_"):
            sentence_keys, report_key = text_keys(batch["input_ids"], batch["sentence_ids"])
            targets = {"study_id": targets, "sentence_keys": sentence_keys, "report_key": report_key}
        with autocast():
            pred = network(
                batch["image"],
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                sentence_ids=batch["sentence_ids"],
                image_view2=batch["image_view2"] if form == "c_tvdim" else None,
                # as the recipe: the network computes what the objective reads (no report pass for local MI)
                outputs=objectives[form].loss.reads if form[0] in "bc" else None,
            )
            loss = objectives[form](pred, targets)
        loss.backward()
        optimizer.step()
        synchronize()
        return time.perf_counter() - start

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # the local-MI loss alone, on fixed features that require grad (its own cost, free of encoder noise)
    with torch.no_grad(), autocast():
        features = network(
            batch["image"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            sentence_ids=batch["sentence_ids"],
        )
    features = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in features.items()}

    def loss_only() -> float:
        synchronize()
        start = time.perf_counter()
        with autocast():
            loss = objectives["b_local_mi"](features, batch["study_ids"])
        loss.backward()
        synchronize()
        return time.perf_counter() - start

    network.train()
    times: dict[str, list[float]] = {form: [] for form in [*objectives, "local_mi_loss_only"]}
    for round_index in tqdm(range(args.warmup + args.rounds), desc="rounds", file=sys.stderr):
        for form in objectives:
            elapsed = step(form)
            if round_index >= args.warmup:
                times[form].append(elapsed)
        elapsed = loss_only()
        if round_index >= args.warmup:
            times["local_mi_loss_only"].append(elapsed)

    print(
        f"device={args.device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, "
        f"{torch.get_num_threads()} threads) amp={args.amp} channels_last={args.channels_last} "
        f"backbone={args.backbone} B={args.batch_size} image={args.image_size}px text={args.text_model} "
        f"(E={embed_dim}) T={args.tokens} K={args.sentences} local_stride={args.local_stride} "
        f"critic={args.critic} estimator={args.estimator} rounds={args.rounds}"
    )
    medians = {form: statistics.median(values) for form, values in times.items()}
    for form, median in medians.items():
        print(f"{form:18s} {median * 1000:9.1f} ms   {args.batch_size / median:8.2f} pairs/s")
    ratio = medians["a_encoders"] / medians["b_local_mi"]
    share = medians["local_mi_loss_only"] / medians["b_local_mi"]
    print(
        f"ratio b/a (throughput, local MI + isolated sentences vs encoders only) = {ratio:.3f}   "
        f"local-MI loss share of step b = {share:.1%}"
    )
    print(
        f"isolation cost: a/a_iso (encoders only) = {medians['a_encoders'] / medians['a_iso_encoders']:.3f}   "
        f"b_report/b (local MI) = {medians['b_report_local_mi'] / medians['b_local_mi']:.3f}  (throughput ratios)"
    )
    print(
        f"ratio c/a (throughput, TVDIM vs encoders only)    = {medians['a_encoders'] / medians['c_tvdim']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
