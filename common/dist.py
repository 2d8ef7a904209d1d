"""Multi-process (torchrun DDP) and single-process multi-GPU (DataParallel) helpers."""
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """rank / world_size of this process; local_rank picks its GPU."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def init_distributed(timeout_s: float = 60.0) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op
    otherwise. NCCL on GPU, gloo on CPU. Collectives time out after ``timeout_s`` so that
    the surviving ranks exit with an error when one dies instead of hanging."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world_size, local_rank)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity without DDP)."""
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def gather_objects(obj, info: DistInfo):
    """List of every rank's ``obj`` (rank order) on every rank; [obj] without DDP."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo):
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo):
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def select_device(gpus, info: DistInfo):
    """torch.device for this process: the rank's GPU under DDP, the first of ``gpus``
    (DataParallel ids) otherwise, CPU when CUDA is unavailable."""
    if not torch.cuda.is_available():
        return torch.device('cpu')
    if info.enabled:
        return torch.device('cuda', info.local_rank)
    return torch.device('cuda', gpus[0] if gpus else 0)
