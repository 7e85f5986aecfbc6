"""Zero-shot cost: scoring N images against every prompt vs extracting their image features, in the same run.

    python benchmarks/bench_zero_shot.py --run RUN_DIR [--images 1000] [--image-size 128 --crop-size 112]

Both steps are the ones ``radmi zero-shot`` runs (:class:`radmi.eval.zero_shot.ZeroShotClassifier`):

- **features**: the centre crop and the run's image encoder, batch by batch (``image_features``);
- **scoring**: the run's objective scores every image against every prompt (``prompt_scores``, the training
  ``pair_scores``: local MI = critic over every region with the objective's aggregate) and takes best positive
  minus best negative per finding (``finding_scores``).

Encoding the prompts (once per run, in the constructor) is timed on its own. The images are random pixels of the
run's input size (the encoder's cost does not depend on the content); ``--image-size``/``--crop-size`` run the
same weights at another input size (the encoder is convolutional: a larger crop gives a larger region grid).
``--critic concat_mlp`` swaps in an untrained local-MI objective with the seed paper's MLP critic (hidden 512,
256) to show that critic's scoring cost. Prints wall and CPU seconds of each repeat, the ratio, and
``/proc/loadavg`` before and after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a `radmi pretrain` run directory")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the run's)")
    parser.add_argument("--crop-size", type=int, default=None, help="centre crop (default: the run's)")
    parser.add_argument("--critic", choices=("run", "concat_mlp"), default="run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from radmi.eval.zero_shot import ZeroShotClassifier, load_run

    run = load_run(args.run)
    if args.critic == "concat_mlp":
        from radmi.losses.objectives import PretrainObjective

        embed_dim = int(run.image_encoder.embed_dim)
        run.objective = PretrainObjective(kind="local", embed_dim=embed_dim, critic="concat_mlp",
                                          critic_kwargs={"hidden": [512, 256]}).eval()  # fmt: skip
    classifier, prompt_wall, prompt_cpu = timed(lambda: ZeroShotClassifier(run))
    if args.image_size:
        classifier.image_size = args.image_size
    if args.crop_size:
        classifier.crop_size = args.crop_size
    size = classifier.image_size
    images = torch.rand(args.images, 1, size, size, generator=torch.Generator().manual_seed(0))
    batches = list(images.split(args.batch_size))

    def extract():
        return [classifier.image_features(batch) for batch in batches]

    def score(features):
        return torch.cat([classifier.finding_scores(classifier.prompt_scores(f)) for f in features])

    loss = classifier.run.objective.loss
    critic = getattr(loss, "critic", None) or getattr(loss, "inter_critic", None)
    print(f"run {args.run}: {classifier.kind} MI, aggregate {getattr(loss, 'aggregate', '-')}, "
          f"critic {type(critic).__name__}")
    features = extract()
    grid = tuple(features[0]["image_local"].shape[-2:]) if "image_local" in features[0] else "-"
    print(f"{args.images} images at {size} px, crop {classifier.crop_size}, region grid {grid}; "
          f"{len(classifier.prompts.sentences)} prompts for {len(classifier.finding_names)} findings; "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"prompt encoding (once per run): {prompt_wall:.2f} s wall, {prompt_cpu:.2f} s CPU")
    print(f"loadavg before: {loadavg()}")
    rows = []
    for repeat in range(args.repeats):
        features, t_extract, c_extract = timed(extract)
        scores, t_score, c_score = timed(lambda features=features: score(features))
        rows.append((t_extract, c_extract, t_score, c_score))
        print(f"repeat {repeat + 1}: features {t_extract:.2f} s wall ({c_extract:.2f} s CPU); scoring "
              f"{t_score:.3f} s wall ({c_score:.3f} s CPU); scoring / features = {t_score / t_extract:.1%} wall, "
              f"{c_score / c_extract:.1%} CPU")  # fmt: skip
    assert scores.shape == (args.images, len(classifier.finding_names))
    print(f"loadavg after: {loadavg()}")
    median = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(f"median: features {median[0]:.2f} s, scoring {median[2]:.3f} s: scoring / features = "
          f"{median[2] / median[0]:.1%} wall, {median[3] / median[1]:.1%} CPU "
          f"(with the one-off prompt encoding: {(median[2] + prompt_wall) / median[0]:.1%} wall)")  # fmt: skip


if __name__ == "__main__":
    main()
