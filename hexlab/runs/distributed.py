"""The process group of a torchrun launch, or a single process without one.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. Each process then decodes on its own GPU
(cuda:LOCAL_RANK) or on the CPU, and the processes meet only at barriers: after the run directory
is created and after every chunk is written. NCCL is used between GPUs and gloo on the CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os

import torch

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: str | None = None
    _group: bool = False

    @classmethod
    def from_environment(cls, device: str | None) -> Distributed:
        """Join the torchrun process group when WORLD_SIZE > 1, else run as a single process."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(device=device)
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
        elif device is None:
            device = "cpu"
        backend = "nccl" if use_cuda else "gloo"
        if not torch.distributed.is_initialized():
            # ranks wait at the final barrier while slower ranks finish their chunks
            torch.distributed.init_process_group(
                backend=backend, timeout=datetime.timedelta(hours=24)
            )
        logger.info("rank %d of %d on %s (%s)", rank, world_size, device, backend)
        return cls(rank, world_size, device, True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self._group:
            torch.distributed.barrier()

    def close(self) -> None:
        if self._group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
