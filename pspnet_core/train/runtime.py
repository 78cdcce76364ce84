"""Where and how this process trains: the :class:`Runtime` (device, rank, world size, quiet),
built once per process and passed as one argument through the engine; none of it is hashed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pspnet_core.config import StudyConfig
from pspnet_core.system.device import resolve_device


@dataclass(frozen=True)
class Runtime:
    """This process's training runtime: not what a run learns, so not in the RunConfig.

    ``device``: where the network and the batches live (``cuda:LOCAL_RANK`` under torchrun);
    ``rank`` / ``world``: this process's rank and the number of processes (0 / 1 when not
    distributed; only rank 0 writes and prints); ``quiet``: no progress bars or epoch lines.
    """

    device: torch.device
    rank: int = 0
    world: int = 1
    quiet: bool = False

    @property
    def shows(self) -> bool:
        """Whether this process shows progress: rank 0, not quiet."""
        return self.rank == 0 and not self.quiet


def distributed_env() -> tuple[int, int]:
    """(rank, world size) of this process: the initialized process group's, else torchrun's
    ``RANK`` / ``WORLD_SIZE`` (``fit`` initializes the group from them), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def build_runtime(device: str | torch.device = "auto", quiet: bool = False) -> Runtime:
    """The runtime of this process from the device setting (the preset's ``device:`` or
    ``--device``: ``auto``, ``cpu``, ``cuda``), the quiet setting (the preset's ``quiet:`` or
    ``--quiet``) and the distributed environment (:func:`distributed_env`)."""
    rank, world = distributed_env()
    return Runtime(resolve_device(device), rank, world, bool(quiet))


def runtime_for(cfg: StudyConfig, device: str | torch.device | None = None,
                quiet: bool | None = None) -> Runtime:
    """:func:`build_runtime` from a preset's ``device`` / ``quiet`` settings (``cfg``: a
    StudyConfig), each replaced by ``device`` / ``quiet`` when given."""
    return build_runtime(cfg.device if device is None else device,
                         cfg.quiet if quiet is None else quiet)
