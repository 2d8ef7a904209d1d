"""Processes and devices: torchrun DDP, DataParallel, device choice, seeds, determinism and the
random state a checkpoint carries per rank."""
import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
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


DEFAULT_TIMEOUT_S = 300.0


def init_distributed(timeout_s: float = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op
    otherwise. NCCL on GPU, gloo on CPU. A rank that dies closes its connections and the
    others fail at their next collective; a rank that hangs makes them fail after
    ``timeout_s`` (the collective timeout, gloo and NCCL alike) instead of waiting forever.
    It must exceed the longest stretch one rank works alone (rank 0 writing checkpoints)."""
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


def is_distributed_failure(err: BaseException) -> bool:
    """True for the errors a collective raises when another rank died or timed out."""
    if isinstance(err, getattr(dist, 'DistError', ())):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and dist.is_available() and dist.is_initialized() and any(
        marker in text for marker in ('Connection closed by peer', 'Connection reset by peer', 'Timed out',
                                      'timed out', 'ProcessGroupGloo', 'NCCL'))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity without DDP)."""
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def broadcast_buffers(module: torch.nn.Module, info: DistInfo):
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart under DDP: each rank
    updates them from its own last batch), so that sharded evaluation sees one model."""
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


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


def seed_everything(seed: int):
    """Seed torch (CPU and every GPU), numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def configure_determinism(deterministic: bool):
    """--deterministic: deterministic kernels everywhere (cuDNN, cuBLAS, scatter/index ops);
    an op without a deterministic implementation raises instead of silently varying."""
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # read when cuBLAS starts
    if deterministic or torch.are_deterministic_algorithms_enabled():  # the call imports the compiler (~3 s)
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def rng_state(device):
    """This process's random state (torch CPU, numpy, the current GPU's)."""
    state = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state()}
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'], device)
