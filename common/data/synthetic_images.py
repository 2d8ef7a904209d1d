"""The embedded synthetic image dataset: small rendered frames of the synthetic bodies, written
as H36M-Toolbox label files and image tree, so that the image pipeline (backbone, feature cache,
head training, evaluation) runs on a CPU in seconds and is read by the very same reader as the
real data.

Each frame is a smooth background with the stick figure drawn where the labels put the joints:
limbs as thick lines, the left side of the body in warm colours and the right side in cold ones
(so that the mirrored view is not the same picture). The camera is a pinhole of focal length
``FOCAL`` looking at a body about 4.5 m away; the boxes, centres, scales and crop keypoints
follow H36M-Toolbox (a 2 m box around the 3D root).
"""
import os
import pickle
import shutil
import tempfile

import numpy as np

from common.data.h36m_toolbox import ACTION_NAMES, CROP_SIZE, LABEL_FILES, affine_matrix
from common.data.skeleton import H36M_17, h36m_raw_to_17
from common.data.synthetic_actions import perform
from common.data.synthetic_motion import make_body

FRAME = (256, 256)      # (width, height) of a synthetic frame
FOCAL = 300.0
SPLITS = {'train': (1, 5), 'test': (9, 11)}
ACTIONS = (2, 14, 9)    # Directions, Walking, Sitting
CAMERAS = 2
LEFT_COLOURS = ((40, 90, 230), (40, 170, 250), (90, 60, 200))      # BGR
RIGHT_COLOURS = ((230, 120, 40), (200, 200, 40), (160, 60, 90))


def _to_camera(world, yaw, depth):
    """World [T, 17, 3] (z up) -> camera frame (x right, y down, z forward), metres."""
    centred = world - world[:1, :1] * np.array([1, 1, 0])
    c, s = np.cos(yaw), np.sin(yaw)
    x = c * centred[..., 0] - s * centred[..., 1]
    y = s * centred[..., 0] + c * centred[..., 1]
    return np.stack([x, 0.9 - centred[..., 2], y + depth], -1)


def _project(points):
    cx, cy = FRAME[0] / 2, FRAME[1] / 2
    return np.stack([FOCAL * points[..., 0] / points[..., 2] + cx, FOCAL * points[..., 1] / points[..., 2] + cy], -1)


def _box(root):
    """H36M-Toolbox ``_infer_box``: the projection of a 2 m wide, 2 m tall box around the root."""
    top_left = _project(root + np.array([-1.0, -0.9, 0.0]))
    bottom_right = _project(root + np.array([1.0, 1.1, 0.0]))
    return np.concatenate([top_left, bottom_right])


def _render(pixels, background, thickness=4.0):
    """A frame [H, W, 3] uint8 BGR: the background with the skeleton's bones as thick lines."""
    image = background.copy()
    left, right = set(H36M_17.joints_left), set(H36M_17.joints_right)
    for child, parent in enumerate(H36M_17.parents):
        if parent < 0:
            continue
        a, b = pixels[parent], pixels[child]
        # only the pixels near the bone: its bounding box grown by the thickness
        x0, y0 = np.maximum(np.floor(np.minimum(a, b) - thickness), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(np.maximum(a, b) + thickness) + 1, FRAME).astype(int)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        direction = b - a
        t = np.clip(((xs - a[0]) * direction[0] + (ys - a[1]) * direction[1]) / max(direction @ direction, 1e-6), 0, 1)
        distance = np.hypot(xs - a[0] - t * direction[0], ys - a[1] - t * direction[1])
        palette = LEFT_COLOURS if child in left else RIGHT_COLOURS if child in right else ((235, 235, 235),)
        image[y0:y1, x0:x1][distance <= thickness] = palette[child % len(palette)]
    return image


def _background(rng):
    """A smooth random colour field (a 4 x 4 grid, bilinearly enlarged)."""
    from scipy.ndimage import zoom
    coarse = rng.uniform(40, 110, size=(4, 4, 3))
    return zoom(coarse, (FRAME[1] / 4, FRAME[0] / 4, 1), order=1).astype(np.uint8)


def _normalise(pixels):
    w, h = FRAME
    return pixels / w * 2 - np.array([1, h / w])


def write_split(directory, subjects, frames, rng, subactions):
    """Frames and labels of ``subjects``; returns the label list."""
    from PIL import Image
    labels = []
    video = 0
    for subject in subjects:
        body = make_body(rng)
        for action in ACTIONS:
            for subaction in range(1, subactions + 1):
                world = h36m_raw_to_17(perform(ACTION_NAMES[action], frames, body, rng))
                for camera in range(CAMERAS):
                    pose3d = _to_camera(world, rng.uniform(0, 2 * np.pi), rng.uniform(4.2, 4.8))
                    folder = f's_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{camera + 1:02d}'
                    os.makedirs(os.path.join(directory, 'images', folder), exist_ok=True)
                    background = _background(rng)
                    for frame in range(frames):
                        gt = _project(pose3d[frame])
                        cpn = gt + rng.normal(0, 1.5, gt.shape)
                        box = _box(pose3d[frame, 0])
                        center = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))
                        scale = ((box[2] - box[0]) / 200.0, (box[3] - box[1]) / 200.0)
                        matrix = affine_matrix(center, scale, CROP_SIZE)
                        name = f'{folder}_{frame + 1:06d}.jpg'
                        Image.fromarray(_render(gt, background)[..., ::-1]).save(
                            os.path.join(directory, 'images', folder, name), quality=95)
                        labels.append({
                            'image': os.path.join(folder, name),
                            'joints_2d_gt': _normalise(gt), 'joints_2d_cpn': _normalise(cpn),
                            'joints_2d_gt_crop': (gt @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32),
                            'joints_2d_cpn_crop': (cpn @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32),
                            'joints_3d': pose3d[frame], 'joints_vis': np.ones((17, 3)), 'video_id': video,
                            'image_id': frame + 1, 'subject': subject, 'action': action, 'subaction': subaction,
                            'camera_id': camera, 'source': 'synthetic', 'nposes': frames,
                            'camera': {'R': np.eye(3), 'T': np.zeros((3, 1)), 'fx': FOCAL, 'fy': FOCAL,
                                       'cx': FRAME[0] / 2, 'cy': FRAME[1] / 2, 'k': np.zeros((3, 1)),
                                       'p': np.zeros((2, 1))},
                            'center': center, 'scale': scale, 'box': box})
                    video += 1
    return labels


def ensure_synthetic_images(directory, seed=0, frames=(6, 3)):
    """Write ``h36m_train.pkl``, ``h36m_validation.pkl`` and ``images/`` into ``directory``
    unless both label files are there; returns ``directory``. frames -- (train, test) frames per
    stream. Written in a temporary folder and moved in, so an interrupted run leaves nothing."""
    if all(os.path.isfile(os.path.join(directory, name)) for name in LABEL_FILES.values()):
        return directory
    os.makedirs(directory, exist_ok=True)
    print(f'INFO: writing the synthetic image dataset to {directory}/ (once)', flush=True)
    staging = tempfile.mkdtemp(prefix='.synthetic-images-', dir=directory)
    rng = np.random.default_rng(seed)
    try:
        for split, count, subactions in (('train', frames[0], 1), ('test', frames[1], 2)):
            labels = write_split(staging, SPLITS[split], count, rng, subactions)
            with open(os.path.join(staging, LABEL_FILES[split]), 'wb') as handle:
                pickle.dump(labels, handle)
        target = os.path.join(directory, 'images')
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, 'images'), target)
        for name in LABEL_FILES.values():
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
