"""Run by tests/test_distributed.py under torchrun (2 processes, gloo): one DDP step on a
fixed half batch per rank, then one epoch of the real Trainer; each rank saves what the
test compares in OUT/rank<r>.pt.

    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT MAIN_PY_FLAGS...
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import distributed  # noqa: E402
from arguments import get_config  # noqa: E402
from data_loader import get_data  # noqa: E402
from losses import hybrid_loss, loss_settings  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import seed_everything  # noqa: E402

HALF = 16  # images per rank in the gradient check


def fixed_half(data, rank):
    """Images rank*HALF .. (rank+1)*HALF - 1 of the validation split: the union over the
    ranks is its first 2*HALF images."""
    return data.loaders["valid"].dataset[torch.arange(rank * HALF, (rank + 1) * HALF)]


def main(out, *args):
    config = get_config(list(args))
    distributed.setup(config.use_gpu)
    rank = distributed.rank()
    seed_everything(1000 + rank)  # other initial weights on each rank: DDP must broadcast rank 0's
    data = get_data(config)
    trainer = Trainer(config, data)
    init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    noise = torch.randn(8)  # this rank's sampling stream
    x, _, y = fixed_half(data, rank)
    out_roll = trainer.ddp(x, config.num_glimpses, policy_mean=True)  # the same locations as one process
    terms = hybrid_loss(out_roll, y, **loss_settings(config))
    trainer.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.train()
    torch.save({"init": init, "noise": noise, "grads": grads, "final": trainer.model.state_dict()},
               os.path.join(out, f"rank{rank}.pt"))
    distributed.cleanup()


if __name__ == "__main__":
    main(*sys.argv[1:])
