"""The pose codec: the one place that owns the conventions between files, models and metrics.

* root centring -- readers split a stream's 3D into root-relative joints (root joint 0) and the
  root's camera-frame trajectory, kept as its own field (``Sequence.trajectory``);
* units -- metres everywhere inside; a model whose outputs are millimetres (``output_unit``)
  is converted at its boundary: targets into its unit before the loss, predictions back to
  metres before scoring, rendering and export;
* 2D normalisation -- pixels to screen coordinates divided by the image width;
* flips -- mirroring with the left/right pairs of the layout at hand (the 2D input and the 3D
  output may use different layouts).
"""
import numpy as np


UNIT_SCALE = {'m': 1.0, 'mm': 1000.0}  # model units per metre


# ----------------------------------------------------------------------------- units

def check_unit(unit):
    if unit not in UNIT_SCALE:
        raise ValueError(f"output_unit must be one of {', '.join(UNIT_SCALE)}, not {unit!r}")
    return unit


def output_unit(model) -> str:
    """The unit of ``model``'s 3D outputs (a bare Lifter, not a DataParallel / DDP wrapper)."""
    return model.output_unit


def unit_scale(model) -> float:
    """Model units per metre: 1 for metre models, 1000 for millimetre models."""
    return UNIT_SCALE[output_unit(model)]


# ----------------------------------------------------------------------------- root

def split_trajectory(pose3d, root):
    """[T, J, 3] camera-frame joints -> (root-relative joints with the root at 0, root
    trajectory [T, 3]); ``root`` None (3D already relative): (pose3d, None)."""
    if root is None:
        return pose3d, None
    trajectory = pose3d[:, root].copy()
    relative = pose3d - pose3d[:, root:root + 1]
    return relative, trajectory


def zero_root(pose, root):
    """A copy of ``pose`` [..., J, C] with the root joint(s) set to 0; ``root`` None keeps it.

    P-STMO-style scoring zeroes the predicted root; VideoPose3D scores it as predicted."""
    if root is None:
        return pose
    pose = pose.clone()
    pose[..., root, :] = 0
    return pose


# ----------------------------------------------------------------------------- 2D normalisation

def normalize_screen_coordinates(x, w, h):
    """Pixels -> [-1, 1] in x, [-h/w, h/w] in y (both divided by the width)."""
    return (x / w * 2 - np.array([1, h / w], dtype=np.float32)).astype(np.float32)


def image_coordinates(x, w, h):
    """Inverse of normalize_screen_coordinates."""
    return ((x + np.array([1, h / w], dtype=np.float32)) * w / 2).astype(np.float32)


# ----------------------------------------------------------------------------- flips

def mirror_pose(pose, left, right):
    """Mirror poses in normalised / camera coordinates: x -> -x, left and right joints swapped.

    pose -- [..., J, C] tensor with x in channel 0; left, right -- joint lists of its layout."""
    left, right = list(left), list(right)
    mirrored = pose.clone()
    mirrored[..., 0] *= -1
    mirrored[..., left + right, :] = mirrored[..., right + left, :]
    return mirrored
