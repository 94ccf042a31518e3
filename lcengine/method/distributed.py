# SPDX-License-Identifier: Apache-2.0
"""The process group of a command started by ``torchrun`` (or alone).

:func:`process_group` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT`` or its rendezvous): with ``WORLD_SIZE`` above 1 it joins the
default group (gloo on the CPU, NCCL on CUDA with one device per rank, ``cuda:LOCAL_RANK``) and
leaves it at the end; alone it is a group of one that communicates nothing. The commands built
on it (``lcengine optimize``) run the same way in both cases.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from lcengine.validation import check_int


@dataclass
class Group:
    """One process's view of its group: its rank, the world size, its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable)."""
        if self.world == 1:
            return obj
        box = [obj if self.rank == 0 else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank (picklable)."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def world_from_env() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` from torchrun's variables; ``(0, 1, 0)`` without them.

    Raises:
        ValueError: a variable that is not an integer, or a rank outside the world.
    """
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name)
        try:
            values.append(default if text is None else int(text))
        except ValueError:
            raise ValueError(
                f"environment variable {name} must be an integer, got {text!r}"
            ) from None
    rank, world, local = values
    check_int("WORLD_SIZE", world, minimum=1)
    if not 0 <= rank < world:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={world}), got {rank}")
    check_int("LOCAL_RANK", local, minimum=0)
    return rank, world, local


def rank_device(device: torch.device, local_rank: int, world: int) -> torch.device:
    """A rank's device: ``cuda:LOCAL_RANK`` for a CUDA job of several ranks, else ``device``."""
    if device.type == "cuda" and world > 1:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} has no GPU: {torch.cuda.device_count()} visible "
                "(start at most one rank per GPU: torchrun --nproc-per-node <= GPUs)"
            )
        return torch.device("cuda", local_rank)
    return device


@contextmanager
def process_group(
    device: torch.device, *, timeout: Optional[datetime.timedelta] = None
) -> Iterator[Group]:
    """The group of this process for the block (see the module docstring).

    Args:
        device: the requested device (``cpu`` or ``cuda``); each CUDA rank gets its own GPU.
        timeout: how long a collective waits for the other ranks (default: torch's).
    """
    rank, world, local = world_from_env()
    dev = rank_device(device, local, world)
    if world == 1 or torch.distributed.is_initialized():
        yield Group(rank, world, local, dev)
        return
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs = {"timeout": timeout} if timeout is not None else {}
    torch.distributed.init_process_group(backend=backend, **kwargs)
    try:
        yield Group(rank, world, local, dev)
        # every rank's last collective has completed before any rank tears the group down
        # (gloo aborts a process whose peer closes the pairs under a pending operation)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


__all__ = ["Group", "process_group", "rank_device", "world_from_env"]
