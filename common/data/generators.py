"""Training windows over sequences, vectorised and DataLoader / DDP friendly.

All streams are concatenated once into flat arrays; a window is a row of frame
indices into them, clamped to its own stream (edge padding by repeating the end
frame). A batch of windows is one fancy-indexing gather: no per-frame Python.

Two kinds (``WindowConfig.kind``):
* ``seq2seq`` -- windows of F frames starting every ``stride`` frames (PoseRetNet,
  MixSTE); target = all F frames.
* ``seq2frame`` -- one window per centre frame (every ``stride``-th), spanning
  ``(F - 1) * tds + 1`` frames sampled every ``tds`` (VideoPose3D, P-STMO); target =
  the window's frames (the centre is index F // 2).
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from common.data.records import Sequence


@dataclass
class WindowConfig:
    """kind -- 'seq2seq' or 'seq2frame'; frames -- F, the model's receptive field;
    stride -- window start (seq2seq) or centre (seq2frame) spacing (default F / 1);
    random_shift -- shift seq2seq starts by a random offset each epoch;
    tds -- temporal downsampling of seq2frame windows (P-STMO -tds); flip -- train-time
    flip augmentation of half the windows; seed -- base of the per-epoch randomness."""
    kind: str = 'seq2frame'
    frames: int = 27
    stride: Optional[int] = None
    random_shift: bool = False
    tds: int = 1
    flip: bool = True
    seed: int = 0


class WindowDataset(torch.utils.data.Dataset):
    """Map-style dataset of windows; ``__getitems__`` gathers a whole batch at once.

    Items are dicts: 'input2d' [F, J, 2], 'target3d' [F, J, 3] (root-relative),
    'intrinsics' [9] (zeros if unknown), 'root_depth' [F] (the root's camera-frame depth,
    metres, 0 if unknown; for the refine module). Call ``set_epoch(e)`` before each epoch:
    shifts and flips are drawn from (seed, epoch), so any worker count, any rank and a
    resumed run all see the same windows."""

    def __init__(self, sequences: List[Sequence], config: WindowConfig, flip_pairs=None, joints_flip_pairs=None,
                 causal_shift=0):
        self.config = config
        self.causal_shift = causal_shift
        self.frames = config.frames
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        self.seq_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.seq_length = lengths
        self.pose2d = torch.from_numpy(np.concatenate([s.pose2d for s in sequences]).astype(np.float32))
        self.target3d = torch.from_numpy(np.concatenate([s.pose3d for s in sequences]).astype(np.float32))
        depths = [s.trajectory[:, 2] if s.trajectory is not None else np.zeros(len(s)) for s in sequences]
        self.root_depth = torch.from_numpy(np.concatenate(depths).astype(np.float32))
        self.intrinsics = torch.from_numpy(np.stack([
            s.intrinsics if s.intrinsics is not None else np.zeros(9, np.float32) for s in sequences]))
        self.flip_pairs = flip_pairs
        self.joints_flip_pairs = joints_flip_pairs or flip_pairs
        self._make_windows()
        self.set_epoch(0)

    def _make_windows(self):
        cfg, frames = self.config, self.frames
        if cfg.kind == 'seq2seq':
            stride = cfg.stride or frames
            counts = np.maximum(1, -(-(self.seq_length - frames) // stride) + 1)
            seq = np.repeat(np.arange(len(counts)), counts)
            first = np.cumsum(counts) - counts
            offset = (np.arange(counts.sum()) - np.repeat(first, counts)) * stride
            # the last window of a stream ends at its last frame (no padding when T >= F)
            offset = np.minimum(offset, np.maximum(self.seq_length[seq] - frames, 0))
            self.offsets = np.arange(frames, dtype=np.int64)
        elif cfg.kind == 'seq2frame':
            stride = cfg.stride or 1
            counts = -(-self.seq_length // stride)
            seq = np.repeat(np.arange(len(counts)), counts)
            first = np.cumsum(counts) - counts
            offset = (np.arange(counts.sum()) - np.repeat(first, counts)) * stride  # centre frame
            pad = frames // 2  # a causal model's window ends at its target frame
            self.offsets = (np.arange(frames, dtype=np.int64) - pad - self.causal_shift) * cfg.tds
        else:
            raise ValueError(f'unknown window kind {cfg.kind!r}')
        self.window_seq = seq.astype(np.int64)
        self.window_offset = offset.astype(np.int64)

    def set_epoch(self, epoch: int):
        rng = np.random.default_rng([self.config.seed, epoch])
        n = len(self.window_seq)
        self.shift = np.zeros(n, dtype=np.int64)
        if self.config.kind == 'seq2seq' and self.config.random_shift:
            stride = self.config.stride or self.frames
            self.shift = rng.integers(0, stride, size=n) - stride // 2
        self.flipped = (rng.random(n) < 0.5) if (self.config.flip and self.flip_pairs) else np.zeros(n, bool)

    def __len__(self):
        return len(self.window_seq)

    def frame_indices(self, index):
        """[N, F] indices into the flat arrays for windows ``index`` (edge padded)."""
        index = np.asarray(index, dtype=np.int64)
        seq = self.window_seq[index]
        local = (self.window_offset[index] + self.shift[index])[:, None] + self.offsets[None]
        local = np.clip(local, 0, self.seq_length[seq][:, None] - 1)
        return torch.from_numpy(self.seq_start[seq][:, None] + local), torch.from_numpy(seq)

    def __getitems__(self, index):
        frames, seq = self.frame_indices(index)
        input2d = self.pose2d[frames]
        target3d = self.target3d[frames]
        intrinsics = self.intrinsics[seq].clone()
        flip = torch.from_numpy(self.flipped[np.asarray(index)])
        if flip.any():
            from common.data.pose_codec import mirror_pose
            left, right = self.flip_pairs
            jl, jr = self.joints_flip_pairs
            input2d[flip] = mirror_pose(input2d[flip], list(left), list(right))
            target3d[flip] = mirror_pose(target3d[flip], list(jl), list(jr))
            intrinsics[flip, 2] *= -1  # cx
            intrinsics[flip, 7] *= -1  # p1
        return {'input2d': input2d, 'target3d': target3d, 'intrinsics': intrinsics,
                'root_depth': self.root_depth[frames]}

    def __getitem__(self, index):
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}


def collate_batch(batch):
    """DataLoader collate for __getitems__ output (already batched)."""
    return batch


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled window order drawn from (seed, epoch); with ``world_size > 1`` each rank takes
    every world_size-th index of the same permutation (padded to equal length, like
    DistributedSampler). ``skip`` drops the first indices of this rank (mid-epoch resume)."""

    def __init__(self, length, seed=0, shuffle=True, rank=0, world_size=1):
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip

    def _indices(self):
        order = (np.random.default_rng([self.seed, self.epoch, 1]).permutation(self.length)
                 if self.shuffle else np.arange(self.length))
        per_rank = -(-self.length // self.world_size)
        order = np.resize(order, per_rank * self.world_size)
        return order[self.rank::self.world_size]

    def __len__(self):
        return -(-self.length // self.world_size) - self.skip

    def __iter__(self):
        return iter(self._indices()[self.skip:].tolist())
