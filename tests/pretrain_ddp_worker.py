"""One process of the 2-process pretraining test (launched by ``torchrun``; not a test module itself).

Runs the bundle recipe with the overrides given as JSON in argv[1], then saves this rank's trained weights and
its share of the first epoch's sample order to ``<output_dir>/rank<r>.pt`` for the test to compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ignite.distributed as idist
import torch
from monai.bundle import ConfigWorkflow
from torch.nn.parallel import DistributedDataParallel

from radmi.bundle.paths import bundle_config
from radmi.engines.distributed import unwrap


def main() -> None:
    overrides = json.loads(sys.argv[1])
    config = bundle_config("radmi_cxr_pretrain")
    workflow = ConfigWorkflow(config_file=str(config), logging_file=False, workflow_type="train", **overrides)
    workflow.initialize()
    workflow.run()
    network = workflow.parser.get_parsed_content("network")
    objective = workflow.parser.get_parsed_content("loss")
    sampler = workflow.parser.get_parsed_content("train#dataloader").sampler
    sampler.set_epoch(1)
    result = {
        "world_size": idist.get_world_size(),
        "ddp": isinstance(network, DistributedDataParallel),
        # parameters only: BatchNorm running statistics are per process until DDP broadcasts rank 0's at the
        # next forward, and rank 0's are the ones checkpointed
        "network": {k: v.detach() for k, v in unwrap(network).named_parameters()},
        "objective": {k: v.detach() for k, v in unwrap(objective).named_parameters()},
        "samples": torch.tensor(list(sampler)),
        "batch_size": workflow.parser.get_parsed_content("train#dataloader").batch_size,
    }
    torch.save(result, Path(overrides["output_dir"]) / f"rank{idist.get_rank()}.pt")
    workflow.finalize()


if __name__ == "__main__":
    main()
