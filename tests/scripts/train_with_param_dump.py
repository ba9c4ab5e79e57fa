"""bench.train with a callback that saves the trainable parameters and their gradients after every
step.

    torchrun --nproc_per_node 2 tests/scripts/train_with_param_dump.py DUMP_DIR -- <bench.train args>

The DDP test compares these files between a two-process and a one-process run.
"""

import sys
from pathlib import Path

import torch

from bench.train import main


def dump_to(directory: Path):
    def save(iteration: int, model: torch.nn.Module, rank: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        parameters = [p for p in model.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
        saved = {  # the parameters after the step, and the (clipped) gradients it applied
            "params": torch.cat([p.detach().flatten().cpu() for p in parameters]),
            "grads": torch.cat([g.flatten().cpu() for g in grads]),
        }
        torch.save(saved, directory / f"rank{rank}_iter{iteration}.pt")

    return save


if __name__ == "__main__":
    directory, separator, *argv = sys.argv[1:]
    assert separator == "--", "usage: train_with_param_dump.py DUMP_DIR -- <bench.train args>"
    main(argv, callbacks=(dump_to(Path(directory)),))
