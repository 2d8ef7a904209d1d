"""Joint layouts as data: joint order, parents, left/right pairs and root of every skeleton,
keyed by layout name (``LAYOUTS``), not by dataset: models take a layout, datasets declare one."""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """name -- layout name; parents -- parent index per joint (-1 for the root);
    joints_left / joints_right -- mirrored pairs, in matching order; joint_names;
    root -- the joint that carries the trajectory (None: the layout has no root joint)."""
    name: str
    parents: Tuple[int, ...]
    joints_left: Tuple[int, ...]
    joints_right: Tuple[int, ...]
    joint_names: Tuple[str, ...]
    root: Optional[int] = None

    @property
    def flip_pairs(self):
        """(left joints, right joints) as lists, for mirroring."""
        return list(self.joints_left), list(self.joints_right)

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def bones(self):
        """(child, parent) pairs."""
        return [(j, p) for j, p in enumerate(self.parents) if p >= 0]

    def bone_side(self):
        """Per bone: 'left', 'right' or 'centre', by the side of its child joint."""
        return ['left' if j in self.joints_left else 'right' if j in self.joints_right else 'centre'
                for j, _ in self.bones()]


# Raw 32-joint Human3.6M mocap layout and the 17 joints every reader keeps.
H36M_RAW_PARENTS = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19,
                    20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30)
H36M_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

H36M_17 = Skeleton(
    name='h36m_17', root=0,
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    joints_left=(4, 5, 6, 11, 12, 13),
    joints_right=(1, 2, 3, 14, 15, 16),
    joint_names=('pelvis', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee',
                 'left_ankle', 'spine', 'thorax', 'neck', 'head', 'left_shoulder', 'left_elbow',
                 'left_wrist', 'right_shoulder', 'right_elbow', 'right_wrist'))

MPI_INF_3DHP_17 = Skeleton(
    name='mpii3d_univ_17', root=14,
    parents=(1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    joints_left=(5, 6, 7, 11, 12, 13),
    joints_right=(2, 3, 4, 8, 9, 10),
    joint_names=('head_top', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
                 'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee',
                 'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'pelvis', 'spine', 'head'))

MPI_INF_3DHP_14 = Skeleton(
    name='mpii3d_14',
    parents=(1, 2, 8, 9, 3, 4, 7, 8, 12, 12, 9, 10, -1, 12),
    joints_left=(3, 4, 5, 9, 10, 11),
    joints_right=(0, 1, 2, 6, 7, 8),
    joint_names=('right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
                 'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow',
                 'left_wrist', 'neck', 'head_top'))


# COCO-17 keypoints (Detectron, Detectron2, AlphaPose COCO models, MMPose 'coco'): a 2D input layout
# without a root joint; the parents only say which bones to draw.
COCO_17 = Skeleton(
    name='coco_17',
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    joints_left=(1, 3, 5, 7, 9, 11, 13, 15),
    joints_right=(2, 4, 6, 8, 10, 12, 14, 16),
    joint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
                 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
                 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'))


#: Joint k of the 14-joint (VIBE-derived) order is joint MPII3D_14_FROM_17[k] of the 17.
MPII3D_14_FROM_17 = (10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7, 1, 0)

LAYOUTS = {layout.name: layout for layout in (H36M_17, MPI_INF_3DHP_17, MPI_INF_3DHP_14, COCO_17)}
# Earlier model configs named the dataset instead of the layout (checkpoints still carry them).
_DATASET_LAYOUTS = {'h36m': 'h36m_17', 'mpii3d_univ': 'mpii3d_univ_17', '3dhp': 'mpii3d_univ_17',
                    'mpii3d': 'mpii3d_14'}


def layout_name(layout=None, dataset=None, default='h36m_17') -> str:
    """The layout a model is built for: ``layout``, else the one of an earlier config's
    ``dataset`` name, else ``default``; a ValueError for an unknown name."""
    name = layout or _DATASET_LAYOUTS.get(dataset, dataset) or default
    if name not in LAYOUTS:
        raise ValueError(f"unknown joint layout {name!r}; known: {', '.join(LAYOUTS)}")
    return name


def h36m_raw_to_17(positions: np.ndarray) -> np.ndarray:
    """[..., 32, C] raw mocap joints -> [..., 17, C] in the order every model uses."""
    return positions[..., list(H36M_KEPT_JOINTS), :]


# Converted AMASS (AMASS-to-3DHPE, its 17 regressor joints; common.data.amass reads the files).
# Regressor joint order -> the release's own 17-point order (its amass_reorder) ...
AMASS_REORDER = (6, 5, 4, 1, 2, 3, 0, 8, 7, 9, 10, 16, 15, 14, 11, 12, 13)
# ... and that order's joint k is h36m_17 joint OFFICIAL_FROM_H36M[k] (models/uplift_upsample.py).
_OFFICIAL_FROM_H36M = (3, 2, 1, 4, 5, 6, 0, 8, 7, 9, 10, 16, 15, 14, 11, 12, 13)
# So h36m_17 joint j is regressor joint AMASS_TO_H36M[j]: the legs change sides, the rest stays.
AMASS_TO_H36M = tuple(AMASS_REORDER[_OFFICIAL_FROM_H36M.index(j)] for j in range(17))
