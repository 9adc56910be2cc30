"""Data-parallel training under torchrun, with PyTorch's own engine (torch.distributed and
DistributedDataParallel): the process group, each rank's shard of a split, sums over the
ranks, and who writes.

    torchrun --nproc_per_node=2 main.py ...      # one machine, 2 processes
    python main.py ...                           # no process group: all of this is inert

Backend nccl with --use_gpu=True (one GPU per process, by LOCAL_RANK), gloo on CPU.
"""

import contextlib
import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def launched():
    """True when this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(use_gpu):
    """Join the process group torchrun describes (nothing without torchrun)."""
    if not launched() or dist.is_initialized():
        return
    if use_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_gpu else "gloo")


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()


def active():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if active() else 0


def world_size():
    return dist.get_world_size() if active() else 1


def is_main():
    """Rank 0 (or the only process): the one that prints, writes checkpoints, logs and plots."""
    return rank() == 0


def device():
    """The device of this process: its GPU under nccl, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() and \
        active() and dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_ranks(tensor):
    """The element-wise sum of `tensor` over all ranks (itself without a process group)."""
    if not active():
        return tensor
    total = tensor.to(device())
    dist.all_reduce(total)
    return total.to(tensor.device)


def max_over_ranks(value):
    """The largest of an int over all ranks (a stop request: the same answer everywhere)."""
    if not active():
        return value
    total = torch.tensor([value], dtype=torch.int64, device=device())
    dist.all_reduce(total, op=dist.ReduceOp.MAX)
    return int(total.item())


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] without a process group)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. generates and caches a dataset), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


class ShardSampler(Sampler):
    """Indices rank, rank + N, rank + 2N, ... of a split (N processes): every image on exactly
    one rank, no padding, so summed metrics count each image once."""

    def __init__(self, length, rank, world_size):
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)
