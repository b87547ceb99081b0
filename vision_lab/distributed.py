"""One training run over several processes or machines: PyTorch's DistributedDataParallel.

    torchrun --nproc_per_node=2 -m vision_lab train --dataset shapes --model speedrun --epochs 5

torchrun starts one process per GPU (or per share of the CPU) and tells each its rank through
environment variables; the CLI calls `start()` and `training.train()` sees the process group.
Every process holds the whole dataset in memory (it is small) and walks the same shuffled order;
each batch is dealt out over the processes (rank r takes images r, r + W, r + 2W, ... of it, W
processes in all), so an epoch has the same batches and the same images as in one process. Each
process augments its own share, DDP averages the gradients, so all copies of the model take the
same step. Losses, accuracies and confusion matrices are added up over the processes; only rank 0
prints events and writes the checkpoint.

gloo carries the messages between CPU processes, nccl between GPUs. Nothing here runs unless a
process group was started, so a plain `python -m vision_lab train` never touches it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in a distributed run."""
    rank: int
    world_size: int
    local_rank: int       # the process's number on its own machine: which GPU it uses
    device: torch.device  # where the messages' tensors live: the GPU for nccl, else the CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun (and any launcher following its convention) sets these for each process."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def start(use_cuda: bool) -> Group:
    """Join the process group torchrun set up: nccl between GPUs (one per process, by local
    rank), gloo between CPU processes."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current()


def current() -> Group | None:
    """The process group this process belongs to, or None in a single-process run."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    nccl = dist.get_backend() == "nccl"
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return Group(dist.get_rank(), dist.get_world_size(), local_rank,
                 torch.device("cuda", local_rank) if nccl else torch.device("cpu"))


def finish(cleanly: bool) -> None:
    """Leave the process group. After a clean end every process first waits for the others: one
    that tore down its connections while another still used them would bring that one down."""
    if dist.is_initialized():
        if cleanly:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, group: Group) -> torch.nn.Module:
    """The model DDP-wrapped for training: its backward pass averages the gradients of all
    processes, so every copy takes the same optimizer step."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[group.local_rank] if group.device.type == "cuda" else None)


def shard_batches(order: torch.Tensor, bounds: list[tuple[int, int]],
                  group: Group) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """This process's share of every batch: the images of `order` it trains on, in order, and
    where each of its batches starts and ends in them. All processes have the same batches, each
    a different share of them (shares differ in size by at most one image)."""
    pieces, local_bounds, start = [], [], 0
    for first, end in bounds:
        piece = order[first:end][group.rank::group.world_size]
        pieces.append(piece)
        local_bounds.append((start, start + len(piece)))
        start += len(piece)
    return torch.cat(pieces), local_bounds


def sum_across(group: Group, values: list[float]) -> list[float]:
    """Each value added up over all processes. Rank 0's result is then sent to all, so every
    process makes the same decision (stop, diverged, best epoch) from exactly the same numbers."""
    t = torch.tensor(values, dtype=torch.float64, device=group.device)
    dist.all_reduce(t)
    dist.broadcast(t, src=0)
    return t.tolist()


def sum_tensor(group: Group, t: torch.Tensor) -> torch.Tensor:
    """An integer tensor (a confusion matrix) added up over all processes."""
    t = t.to(group.device)
    dist.all_reduce(t)
    return t.cpu()


def from_main(group: Group, value):
    """Rank 0's value of a picklable object, on every process (e.g. the checkpoint path)."""
    box = [value]
    dist.broadcast_object_list(box, src=0, device=group.device)
    return box[0]


def gather(group: Group, value) -> list:
    """Every process's value of a picklable object, in rank order."""
    out = [None] * group.world_size
    dist.all_gather_object(out, value)
    return out


def share_buffers(model: torch.nn.Module, group: Group) -> None:
    """Rank 0's BatchNorm running statistics on every process. Each process updates them from
    its own share of each batch, so they drift apart a little; the model that is evaluated (on
    shares of the images) must be the one rank 0 saves."""
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
