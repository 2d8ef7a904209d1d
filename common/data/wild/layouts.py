"""The 2D layouts of the detectors and their conversions to what a lifter takes.

Layouts (docs: data-formats 5.3-5.6): COCO-17 (common.data.skeleton.COCO_17), Halpe-26 (COCO-17 +
head top, neck, hip and six foot points), OpenPose BODY_25 and COCO-18. A lifter takes COCO-17
(trained on COCO-layout detections: no conversion, the mapping is learned) or Human3.6M-17 (the
published formulas: MMPose's ``convert_keypoint_definition`` for COCO-17, MotionBERT's ``halpe2h36m``
for Halpe-26). OpenPose layouts go to COCO-17 by joint names first.

Arrays are [T, K, C] for any C (x, y, and a confidence channel convert alike: a joint made from
several gets their mean).
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from common.errors import UserError


@dataclass(frozen=True)
class KeypointLayout:
    """name; joint_names; left / right -- mirrored joints, pairwise."""
    name: str
    joint_names: Tuple[str, ...]
    left: Tuple[int, ...]
    right: Tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def flip_pairs(self):
        return list(self.left), list(self.right)


COCO_NAMES = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
              'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
              'right_knee', 'left_ankle', 'right_ankle')
FORMAT_LAYOUTS = {layout.name: layout for layout in (
    KeypointLayout('coco_17', COCO_NAMES, (1, 3, 5, 7, 9, 11, 13, 15), (2, 4, 6, 8, 10, 12, 14, 16)),
    KeypointLayout('halpe_26', COCO_NAMES + ('head', 'neck', 'hip', 'left_big_toe', 'right_big_toe',
                                             'left_small_toe', 'right_small_toe', 'left_heel', 'right_heel'),
                   (1, 3, 5, 7, 9, 11, 13, 15, 20, 22, 24), (2, 4, 6, 8, 10, 12, 14, 16, 21, 23, 25)),
    KeypointLayout('body_25', ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder',
                               'left_elbow', 'left_wrist', 'mid_hip', 'right_hip', 'right_knee', 'right_ankle',
                               'left_hip', 'left_knee', 'left_ankle', 'right_eye', 'left_eye', 'right_ear',
                               'left_ear', 'left_big_toe', 'left_small_toe', 'left_heel', 'right_big_toe',
                               'right_small_toe', 'right_heel'),
                   (5, 6, 7, 12, 13, 14, 16, 18, 19, 20, 21), (2, 3, 4, 9, 10, 11, 15, 17, 22, 23, 24)),
    KeypointLayout('coco_18', ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder',
                               'left_elbow', 'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip',
                               'left_knee', 'left_ankle', 'right_eye', 'left_eye', 'right_ear', 'left_ear'),
                   (5, 6, 7, 11, 12, 13, 15, 17), (2, 3, 4, 8, 9, 10, 14, 16)),
)}

# COCO-17 joint k is joint COCO17_FROM[layout][k] of the layout (matched by name)
COCO17_FROM = {name: tuple(FORMAT_LAYOUTS[name].joint_names.index(j) for j in COCO_NAMES)
               for name in ('coco_17', 'halpe_26', 'body_25', 'coco_18')}

# Human3.6M-17 joints copied from one COCO-17 joint (MMPose's table; joint 9, neck/nose, is the nose)
H36M_FROM_COCO = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 9: 0, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}
# ... and from one Halpe-26 joint (MotionBERT's table: 0 = hip, 8 = neck, 10 = head top)
H36M_FROM_HALPE = {0: 19, 1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 8: 18, 9: 0, 10: 17, 11: 5, 12: 7, 13: 9,
                   14: 6, 15: 8, 16: 10}

#: What the number of joints of a file's people means, per tool (whole-body files keep their body part).
LAYOUT_OF_COUNT = {'alphapose': {17: 'coco_17', 26: 'halpe_26', 136: 'halpe_26', 133: 'coco_17'},
                   'openpose': {25: 'body_25', 18: 'coco_18'},
                   'mmpose': {17: 'coco_17', 26: 'halpe_26', 133: 'coco_17', 18: 'coco_18'},
                   'detectron2': {17: 'coco_17'}, 'videopose3d': {17: 'coco_17'}}


def layout_of(tool: str, count: int, path: str) -> Tuple[str, int]:
    """(layout name, joints kept) of a file whose people have ``count`` joints, or a UserError."""
    known = LAYOUT_OF_COUNT[tool]
    if count not in known:
        raise UserError(f"'{path}': {tool} people with {count} joints are not a layout this program "
                        f"converts (known: {', '.join(f'{k} ({v})' for k, v in known.items())}); "
                        f"run the detector with a COCO-17 or Halpe-26 body model")
    name = known[count]
    return name, FORMAT_LAYOUTS[name].num_joints


def to_coco17(keypoints: np.ndarray, layout: str) -> np.ndarray:
    """[T, K, C] of ``layout`` -> [T, 17, C] COCO-17."""
    return keypoints[:, list(COCO17_FROM[layout])]


def coco17_to_h36m17(keypoints: np.ndarray) -> np.ndarray:
    """MMPose's COCO -> Human3.6M formulas: pelvis = mid-hips, thorax = mid-shoulders, spine =
    mid pelvis-thorax, head = mid-eyes, the others copied. [T, 17, C] -> [T, 17, C]."""
    out = np.zeros_like(keypoints)
    out[:, 0] = (keypoints[:, 11] + keypoints[:, 12]) / 2
    out[:, 8] = (keypoints[:, 5] + keypoints[:, 6]) / 2
    out[:, 7] = (out[:, 0] + out[:, 8]) / 2
    out[:, 10] = (keypoints[:, 1] + keypoints[:, 2]) / 2
    for joint, source in H36M_FROM_COCO.items():
        out[:, joint] = keypoints[:, source]
    return out


def halpe26_to_h36m17(keypoints: np.ndarray) -> np.ndarray:
    """MotionBERT's Halpe-26 -> Human3.6M: spine = mid neck-hip, the others copied (head = head
    top, thorax = neck). [T, 26, C] -> [T, 17, C]."""
    out = np.zeros(keypoints.shape[:1] + (17,) + keypoints.shape[2:], keypoints.dtype)
    out[:, 7] = (keypoints[:, 18] + keypoints[:, 19]) / 2
    for joint, source in H36M_FROM_HALPE.items():
        out[:, joint] = keypoints[:, source]
    return out


#: Model input layouts the keypoints of any format convert to, and their flip pairs.
MODEL_INPUT_PAIRS = {'coco_17': FORMAT_LAYOUTS['coco_17'].flip_pairs,
                     'h36m_17': ([4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16])}


def check_model_layout(model_layout: str):
    """A UserError unless detector keypoints convert to ``model_layout``."""
    if model_layout not in MODEL_INPUT_PAIRS:
        raise UserError(f"the model takes {model_layout} 2D keypoints; detector keypoints convert to "
                        f"{' or '.join(MODEL_INPUT_PAIRS)} only: use a model trained on Human3.6M or on COCO "
                        f"detections (run_in_the_wild.py)")


def convert_for_model(keypoints: np.ndarray, layout: str, model_layout: str) -> np.ndarray:
    """[T, K, C] keypoints of ``layout`` as the model's input layout (COCO-17 or Human3.6M-17)."""
    check_model_layout(model_layout)
    if layout == model_layout:
        return keypoints
    if model_layout == 'coco_17':
        if layout == 'h36m_17':
            raise UserError('the model takes COCO-17 keypoints and these are Human3.6M-17: use a model '
                            'trained on Human3.6M-layout 2D')
        return to_coco17(keypoints, layout)
    if layout == 'halpe_26':
        return halpe26_to_h36m17(keypoints)
    return coco17_to_h36m17(to_coco17(keypoints, layout))
