"""World-frame motion seen through the Human3.6M cameras, as Uplift-and-Upsample pretrains on AMASS.

The release treats AMASS world coordinates as Human3.6M world coordinates (not re-centred) and
gives every training window one of the 28 calibrated cameras of the seven labelled subjects, drawn
at random: ``X_cam = R(q)^T (X - t)``, then the Human3.6M distortion model with intrinsics
normalised like the 2D (focal / width * 2, centre in screen units), which gives normalised 2D
directly. A flipped window mirrors the world x coordinate and swaps left and right joints before
the projection, the camera unchanged. ``CameraDrawWindows`` does this per window and per epoch;
evaluation streams get one camera each, drawn once from the seed.
"""
from dataclasses import dataclass
from typing import List, NamedTuple, Optional

import numpy as np
import torch

from common.data.camera import load_h36m_cameras
from common.data.generators import WindowDataset
from common.data.pose_codec import mirror_pose
from common.data.records import DatasetSpec, Sequence
from common.data.skeleton import H36M_17


class ViewTable(NamedTuple):
    """The cameras a window can draw: orientation [C, 4] (w, x, y, z), translation [C, 3] metres,
    normalised intrinsics [C, 9] (fx, fy, cx, cy, k1, k2, k3, p1, p2), image sizes [C, 2]."""
    orientation: torch.Tensor
    translation: torch.Tensor
    intrinsics: torch.Tensor
    image_size: torch.Tensor


def h36m_view_table() -> ViewTable:
    """The 28 Human3.6M cameras with extrinsics (S1, S5, S6, S7, S8, S9, S11; four each)."""
    cams = [c for cams in load_h36m_cameras().values() for c in cams if c.orientation is not None]
    return ViewTable(torch.tensor(np.stack([c.orientation for c in cams])),
                     torch.tensor(np.stack([c.translation for c in cams])),
                     torch.tensor(np.stack([c.normalized_intrinsics() for c in cams])),
                     torch.tensor([[c.res_w, c.res_h] for c in cams]))


def rotation_matrices(q):
    """Unit quaternions [B, 4] (w, x, y, z) -> rotation matrices [B, 3, 3] (the same rotation)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).unflatten(-1, (3, 3))


def view_through(world: torch.Tensor, orientation, translation, intrinsics):
    """world [B, T, J, 3] metres, per-window cameras (orientation [B, 4], translation [B, 3],
    intrinsics [B, 9]) -> (camera-frame poses [B, T, J, 3], normalised 2D [B, T, J, 2])."""
    # R(q)^T (X - t): one 3 x 3 product per point, the rotation built once per window
    camera = torch.einsum('bji,btkj->btki', rotation_matrices(orientation), world - translation[:, None, None])
    f, c, k, p = (intrinsics[:, None, None, a:b] for a, b in ((0, 2), (2, 4), (4, 7), (7, 9)))
    xy = (camera[..., :2] / camera[..., 2:3]).clamp(-1, 1)
    r2 = (xy ** 2).sum(-1, keepdim=True)
    radial = 1 + (k * torch.cat([r2, r2 ** 2, r2 ** 3], -1)).sum(-1, keepdim=True)
    tangential = (p * xy).sum(-1, keepdim=True)
    return camera, f * (xy * (radial + tangential) + p * r2) + c


@dataclass
class WorldSequence(Sequence):
    """A camera stream that also keeps its world-frame motion, so windows can be re-viewed.

    world -- [T, J, 3] world metres (h36m_17 order)."""
    world: Optional[np.ndarray] = None


def world_sequences(found, views: ViewTable, rng, downsample=1) -> List[WorldSequence]:
    """WorldSequences of (sub-dataset, subject, sequence, world) tuples, each viewed through one
    camera of ``views`` drawn from ``rng`` (group = the sub-dataset, for per-dataset scores)."""
    sequences = []
    for dataset, subject, name, world in found:
        world = np.ascontiguousarray(world[::downsample])
        index = int(rng.integers(len(views.orientation)))
        camera, pose2d = view_through(torch.from_numpy(world)[None], views.orientation[index:index + 1],
                                      views.translation[index:index + 1], views.intrinsics[index:index + 1])
        camera, pose2d = camera[0].numpy(), pose2d[0].numpy()
        root = camera[:, H36M_17.root]
        sequences.append(WorldSequence(
            pose2d=pose2d.astype(np.float32), pose3d=(camera - root[:, None]).astype(np.float32),
            subject=f'{dataset}/{subject}', action=name, camera=index, group=dataset,
            intrinsics=views.intrinsics[index].numpy(), image_size=tuple(views.image_size[index].tolist()),
            trajectory=root.astype(np.float32), world=world))
    return sequences


class CameraDrawWindows(WindowDataset):
    """Training windows of WorldSequences, each seen through a camera drawn from (seed, epoch, window)
    and flipped in the world frame before the projection (see the module docstring)."""

    def __init__(self, sequences: List[WorldSequence], config, flip_pairs=None, joints_flip_pairs=None,
                 causal_shift=0, views: Optional[ViewTable] = None):
        if any(getattr(s, 'world', None) is None for s in sequences):
            raise ValueError('CameraDrawWindows needs WorldSequences (their world-frame motion)')
        self.world = torch.from_numpy(np.concatenate([s.world for s in sequences]).astype(np.float32))
        self.views = views or h36m_view_table()
        super().__init__(sequences, config, flip_pairs, joints_flip_pairs, causal_shift)

    def set_epoch(self, epoch: int):
        super().set_epoch(epoch)
        rng = np.random.default_rng([self.config.seed, epoch, 2])
        self.window_camera = torch.from_numpy(rng.integers(0, len(self.views.orientation), len(self.window_seq)))

    def __getitems__(self, index):
        frames, _ = self.frame_indices(index)
        world = self.world[frames]
        flip = torch.from_numpy(self.flipped[np.asarray(index)])
        if flip.any():  # the world x mirrored, left and right swapped; the camera stays
            left, right = self.joints_flip_pairs
            world[flip] = mirror_pose(world[flip], list(left), list(right))
        cam = self.window_camera[np.asarray(index)]
        camera, input2d = view_through(world, self.views.orientation[cam], self.views.translation[cam],
                                       self.views.intrinsics[cam])
        root = camera[:, :, H36M_17.root:H36M_17.root + 1]
        return {'input2d': input2d, 'target3d': camera - root, 'intrinsics': self.views.intrinsics[cam].clone(),
                'root_depth': root[:, :, 0, 2]}


AMASS_SPEC = DatasetSpec(name='amass', skeleton=H36M_17, root_joint=0, kps_left=H36M_17.joints_left,
                         kps_right=H36M_17.joints_right, fps=50, window_dataset=CameraDrawWindows)
