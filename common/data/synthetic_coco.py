"""COCO-layout "detections" of the synthetic Human3.6M bodies: ``data_2d_h36m_detectron_pt_coco.npz``.

The file has the layout of the published Detectron file (docs: data-formats 5.1): subject -> action ->
4 camera streams of [N, 17, 3] float32 (x, y in pixels, keypoint probability), COCO-17 order, COCO
metadata. The body joints are the synthetic mocap's; the face points (nose, eyes, ears) are placed on
the head from its geometry (up from the thorax to the head top, sideways from the shoulders).
Detector-like errors: correlated jitter, occasional outliers, left/right confusions, streams a few
frames longer than the mocap, and missed frames written as a repeat of the previous pose, the way
the published importer fills them. Generation is deterministic and reads only the 3D file, so the
other synthetic files stay as they are.
"""
import os
import tempfile

import numpy as np

from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
from common.data.skeleton import COCO_17, h36m_raw_to_17
from common.data.synthetic_detections import detector_errors

COCO_FILE = 'data_2d_h36m_detectron_pt_coco.npz'
COCO_METADATA = {'layout_name': 'coco', 'num_joints': 17,
                 'keypoints_symmetry': [list(COCO_17.joints_left), list(COCO_17.joints_right)]}
# COCO body joints 5..16 from the Human3.6M-17 joints (shoulders, elbows, wrists, hips, knees, ankles)
COCO_BODY_FROM_H36M = (11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def coco_points(joints17):
    """[T, 17, 3] Human3.6M-17 joints (any frame) -> [T, 17, 3] COCO-17 points in the same frame.

    Face points sit on a sphere around the head centre: ``up`` runs from the thorax to the head
    top, ``side`` from the right to the left shoulder (made orthogonal to up), and the face looks
    along ``side x up``."""
    thorax, head_top = joints17[:, 8], joints17[:, 10]
    up = _unit(head_top - thorax)
    side = joints17[:, 11] - joints17[:, 14]
    side = _unit(side - np.sum(side * up, -1, keepdims=True) * up)
    forward = np.cross(side, up)
    size = np.linalg.norm(head_top - thorax, axis=-1, keepdims=True)  # about 0.3 m
    centre = thorax + 0.62 * size * up
    out = np.empty_like(joints17)
    out[:, 0] = centre + 0.33 * size * forward  # nose
    for index, sign in ((1, 1), (2, -1)):  # left / right eye
        out[:, index] = centre + 0.27 * size * forward + 0.12 * size * up + sign * 0.11 * size * side
    for index, sign in ((3, 1), (4, -1)):  # left / right ear
        out[:, index] = centre + 0.05 * size * up + sign * 0.25 * size * side
    out[:, 5:] = joints17[:, list(COCO_BODY_FROM_H36M)]
    return out


def detector_output(pixels, rng):
    """[T, 17, 2] clean pixels -> [T, 17, 3] (x, y, probability) with detector-like errors."""
    frames = len(pixels)
    noisy, outliers = detector_errors(pixels, rng, COCO_17, jitter_px=5.0, white_px=1.5, outlier_px=30.0)
    probability = np.clip(rng.normal(0.8, 0.08, (frames, 17)) - 0.4 * outliers, 0.05, 1.0)
    stream = np.concatenate([noisy, probability[..., None]], -1)
    for t in np.nonzero(rng.random(frames) < 0.01)[0]:
        if t > 0:  # a missed frame: the importer repeats the previous pose
            stream[t] = stream[t - 1]
    return stream.astype(np.float32)


def write_detectron_coco(directory, seed=0):
    """Write ``COCO_FILE`` next to the synthetic data_3d_h36m.npz of ``directory``."""
    with np.load(os.path.join(directory, 'data_3d_h36m.npz'), allow_pickle=True) as archive:
        positions_3d = archive['positions_3d'].item()
    rng = np.random.default_rng(seed + 16)
    cameras = load_h36m_cameras()
    positions_2d = {}
    for subject in sorted(positions_3d):
        positions_2d[subject] = {}
        for action in sorted(positions_3d[subject]):
            points = coco_points(h36m_raw_to_17(positions_3d[subject][action]))
            streams = []
            for camera in cameras[subject]:
                pixels = project_to_2d(world_to_camera(points, camera.orientation, camera.translation), camera)
                extra = int(rng.integers(0, 4))  # detector streams run a few frames longer than the mocap
                streams.append(detector_output(np.concatenate([pixels, pixels[-1:].repeat(extra, 0)]), rng))
            positions_2d[subject][action] = streams
    handle, staging = tempfile.mkstemp(prefix='.coco-', suffix='.npz', dir=directory)
    os.close(handle)
    try:
        np.savez_compressed(staging, positions_2d=positions_2d, metadata=COCO_METADATA)
        os.chmod(staging, 0o644)  # mkstemp makes it private; the other data files are readable by all
        os.replace(staging, os.path.join(directory, COCO_FILE))
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def ensure_coco_detections(directory, seed=0):
    """Write the COCO-layout file unless it is there (an older synthetic folder gets it added)."""
    if not os.path.isfile(os.path.join(directory, COCO_FILE)):
        print(f'INFO: writing the synthetic COCO-layout detections to {directory}/{COCO_FILE} (once)', flush=True)
        write_detectron_coco(directory, seed)
