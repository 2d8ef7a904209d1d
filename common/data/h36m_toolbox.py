"""Human3.6M images in the H36M-Toolbox layout (the data of Context-Aware PoseFormer).

Files: ``h36m_train.pkl`` / ``h36m_validation.pkl`` (a pickled list with one dict per image,
written by H36M-Toolbox ``generate_labels_h36m.py``) and the image tree
``images/s_XX_act_XX_subact_XX_ca_XX/s_XX_act_XX_subact_XX_ca_XX_000001.jpg``. Per image the labels
hold ``image`` (path inside the tree), ``joints_2d_gt`` / ``joints_2d_cpn`` (normalised screen
coordinates, x / w * 2 - [1, h / w]), ``joints_2d_gt_crop`` / ``joints_2d_cpn_crop`` (pixels in the
192 x 256 crop), ``joints_3d`` (camera frame, metres), ``box``, ``center``, ``scale`` (= box / 200),
``camera``, ``subject``, ``action`` (2-16), ``subaction`` (1-2), ``camera_id`` (0-3), ``image_id``.

The crop is the release's affine warp of the box (centre, scale) to 192 x 256 with bilinear
interpolation and black outside the frame. Images are decoded with Pillow, which is installed with
matplotlib already and reads JPEG through libjpeg like OpenCV; decoded pixels are handed on in BGR
order, the order the release's ``cv2.imread`` gives, so the normalisation is the release's.
"""
import os
import pickle
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from scipy.ndimage import map_coordinates

from common.data.records import DatasetSpec, _DatasetUnpickler
from common.data.skeleton import H36M_17
from common.errors import UserError

CROP_SIZE = (192, 256)   # (width, height)
ACTION_NAMES = {2: 'Directions', 3: 'Discussion', 4: 'Eating', 5: 'Greeting', 6: 'Phoning', 7: 'Posing',
                8: 'Purchases', 9: 'Sitting', 10: 'SittingDown', 11: 'Smoking', 12: 'Photo', 13: 'Waiting',
                14: 'Walking', 15: 'WalkDog', 16: 'WalkTogether'}
LABEL_FILES = {'train': 'h36m_train.pkl', 'test': 'h36m_validation.pkl'}
REQUIRED_KEYS = ('image', 'joints_2d_gt', 'joints_2d_cpn', 'joints_2d_gt_crop', 'joints_2d_cpn_crop', 'joints_3d',
                 'center', 'scale', 'subject', 'action', 'subaction', 'camera_id', 'image_id')
SOURCES = ('cpn', 'gt')
SIZE_SLACK_PX = 2.0
IMAGE_DATASETS = ('h36m_toolbox', 'synthetic_images')
SPEC = DatasetSpec(name='h36m_toolbox', skeleton=H36M_17, root_joint=0, kps_left=H36M_17.joints_left,
                   kps_right=H36M_17.joints_right)


@dataclass(frozen=True)
class ImageDataConfig:
    """dataset -- 'h36m_toolbox' or 'synthetic_images' (generated into <root_path>/synthetic_images);
    root_path -- the folder with h36m_train.pkl, h36m_validation.pkl and images/; image_root,
    train_labels, test_labels -- those three where they lie elsewhere (the release's YAML names
    them); keypoints -- 2D source ('cpn' or 'gt')."""
    dataset: str = 'h36m_toolbox'
    root_path: str = 'data'
    image_root: Optional[str] = None
    train_labels: Optional[str] = None
    test_labels: Optional[str] = None
    keypoints: str = 'cpn'


def keypoint_source(keypoints: str) -> str:
    """The labels' 2D source for a -k value: 'gt' for gt*, else the CPN detections."""
    return 'gt' if str(keypoints).lower().startswith('gt') else 'cpn'


def affine_matrix(center, scale, size=CROP_SIZE):
    """The release's 2 x 3 map from frame pixels to crop pixels: the box centre goes to the crop
    centre ((w - 1) / 2, (h - 1) / 2), and (scale_x * 200 - 1) frame pixels to (w - 1) crop pixels
    along the vertical direction; three point pairs (in float32, as the release) solved exactly.
    center, scale [2] -> [2, 3], or [N, 2] -> [N, 2, 3]."""
    center = np.asarray(center, np.float64)
    single = center.ndim == 1
    center, scale = np.atleast_2d(center), np.atleast_2d(np.asarray(scale, np.float64))
    src_len = (scale[:, 0] * 200.0 - 1).astype(np.float32) * np.float32(-0.5)
    width, height = size
    dst_centre = np.array([(width - 1) * 0.5, (height - 1) * 0.5])
    dst_len = (width - 1) * -0.5
    corner = lambda length: np.stack([np.zeros_like(length), length], -1)
    src = np.stack([center, center + corner(src_len), center + src_len[:, None]], 1).astype(np.float32)
    dst = np.stack([dst_centre, dst_centre + [0, dst_len], dst_centre + dst_len]).astype(np.float32)
    lhs = np.concatenate([src.astype(np.float64), np.ones((len(src), 3, 1))], 2)
    matrices = np.linalg.solve(lhs, np.broadcast_to(dst.astype(np.float64), (len(src), 3, 2))).transpose(0, 2, 1)
    return matrices[0] if single else matrices


def crop_image(image, matrix, size=CROP_SIZE):
    """image [H, W, 3] uint8 -> [h, w, 3] uint8 crop: every crop pixel samples the frame at the
    inverse affine position, bilinear, zero outside (as cv2.warpAffine with INTER_LINEAR)."""
    width, height = size
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    # grid-constant: a sample near the border blends the edge pixel with the black outside
    channels = [map_coordinates(image[..., c].astype(np.float32), [src_y, src_x], order=1, mode='grid-constant',
                                cval=0.0) for c in range(image.shape[2])]
    return np.clip(np.rint(np.stack(channels, -1)), 0, 255).astype(np.uint8)


@dataclass
class LabelTable:
    """One H36M-Toolbox label file as arrays (N images).

    keypoints_2d -- [N, 17, 2] normalised frame coordinates of the chosen source
    crop_pixels -- [N, 17, 2] the same joints in crop pixels (x, y)
    pose3d -- [N, 17, 3] camera frame, metres, root-relative (joint 0 is 0)
    center, scale -- [N, 2] the crop box; frame_size -- [N, 2] (w, h) the labels were made from
    stream -- [N] index of the stream (subject, action, subaction, camera) of each image"""
    path: str
    images: List[str]
    keypoints_2d: np.ndarray
    crop_pixels: np.ndarray
    pose3d: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    frame_size: np.ndarray
    subject: np.ndarray
    action: np.ndarray
    subaction: np.ndarray
    camera: np.ndarray
    image_id: np.ndarray
    stream: np.ndarray
    stream_names: List[str]

    def __len__(self):
        return len(self.images)

    def group(self, index) -> str:
        return ACTION_NAMES.get(int(self.action[index]), f'action {int(self.action[index])}')


def _frame_size(normalised, crop, center, scale):
    """(w, h) [N, 2] of the frames that normalise(X) = X / w * 2 - [1, h / w] came from,
    recovered from the crop pixels through the inverse warp (median over joints)."""
    matrices = affine_matrix(center, scale)
    square = np.concatenate([matrices, np.broadcast_to([0.0, 0.0, 1.0], (len(matrices), 1, 3))], 1)
    inverse = np.linalg.inv(square)[:, :2]
    pixels = np.einsum('nij,nkj->nki', inverse[:, :, :2], crop.astype(np.float64)) + inverse[:, None, :, 2]
    ratio = np.where(np.abs(normalised[..., 0] + 1) > 1e-3, 2 * pixels[..., 0] / (normalised[..., 0] + 1), np.nan)
    w = np.nanmedian(ratio, axis=1)
    h = np.median(2 * pixels[..., 1] - normalised[..., 1] * w[:, None], axis=1)
    return np.stack([w, h], 1)


def read_labels(path: str, source: str = 'cpn', limit: Optional[int] = None) -> LabelTable:
    """Read an H36M-Toolbox label file (any other content is one line naming the file)."""
    remake = 'make it with H36M-Toolbox generate_labels_h36m.py (or use -d synthetic_images)'
    if not os.path.isfile(path):
        raise UserError(f"label file '{path}' not found: {remake}")
    try:
        with open(path, 'rb') as handle:
            entries = _DatasetUnpickler(handle, encoding='latin1').load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise UserError(f"label file '{path}' is not an H36M-Toolbox label list ({str(err).splitlines()[0]}): "
                        f"{remake}") from None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise UserError(f"label file '{path}' holds {type(entries).__name__}, not the H36M-Toolbox list of "
                        f"per-image dicts: {remake}")
    missing = [k for k in REQUIRED_KEYS if k not in entries[0]]
    if missing:
        raise UserError(f"label file '{path}' has another layout (no {', '.join(missing[:3])}): {remake}")
    entries = entries[:limit] if limit else entries
    try:
        def pick(key, shape):
            return np.stack([np.asarray(e[key], np.float64) for e in entries]).reshape(len(entries), *shape)
        kp2d, crop = pick(f'joints_2d_{source}', (17, 2)), pick(f'joints_2d_{source}_crop', (17, 2))
        gt2d, gt_crop = pick('joints_2d_gt', (17, 2)), pick('joints_2d_gt_crop', (17, 2))
        joints3d, center, scale = pick('joints_3d', (17, 3)), pick('center', (2,)), pick('scale', (2,))
        ints = {k: np.array([int(e[k]) for e in entries]) for k in ('subject', 'action', 'subaction', 'camera_id',
                                                                    'image_id')}
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"label file '{path}' has malformed entries ({err}): {remake}") from None
    keys = list(zip(ints['subject'], ints['action'], ints['subaction'], ints['camera_id']))
    names = sorted(set(keys))
    index = {k: i for i, k in enumerate(names)}
    stream_names = ['s_{:02d}_act_{:02d}_subact_{:02d}_ca_{:02d}'.format(s, a, sa, c + 1) for s, a, sa, c in names]
    return LabelTable(
        path=path, images=[str(e['image']) for e in entries], keypoints_2d=kp2d.astype(np.float32),
        crop_pixels=crop.astype(np.float32), pose3d=(joints3d - joints3d[:, :1]).astype(np.float32),
        center=center, scale=scale, frame_size=_frame_size(gt2d, gt_crop, center, scale),
        subject=ints['subject'], action=ints['action'], subaction=ints['subaction'], camera=ints['camera_id'],
        image_id=ints['image_id'], stream=np.array([index[k] for k in keys]), stream_names=stream_names)


def decode_image(path: str, expected_size=None) -> np.ndarray:
    """A frame [H, W, 3] uint8 in BGR order; a missing, unreadable or wrongly sized file is one
    line naming it."""
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path):
        raise UserError(f"image '{path}' not found: check --image-root (the folder holding the "
                        f"s_XX_act_XX_subact_XX_ca_XX folders) or re-extract the frames with H36M-Toolbox")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert('RGB'))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"image '{path}' cannot be decoded ({err}): re-extract it with H36M-Toolbox") from None
    if expected_size is not None and np.isfinite(expected_size).all():
        w, h = expected_size
        if abs(rgb.shape[1] - w) > SIZE_SLACK_PX or abs(rgb.shape[0] - h) > SIZE_SLACK_PX:
            raise UserError(f"image '{path}' is {rgb.shape[1]} x {rgb.shape[0]} pixels, but its labels were made "
                            f"from a {w:.0f} x {h:.0f} frame: use the original frames, or regenerate the labels "
                            f"for these images")
    return rgb[..., ::-1]


class ToolboxImages(torch.utils.data.Dataset):
    """Crops and labels of one label table; decoding and cropping run in DataLoader workers.

    item -> (crop [256, 192, 3] uint8 BGR, keypoints_2d [17, 2], crop_pixels [17, 2],
    target [1, 17, 3] metres root-relative, index)."""

    def __init__(self, table: LabelTable, image_root: str):
        self.table, self.image_root = table, image_root

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        t = self.table
        frame = decode_image(os.path.join(self.image_root, t.images[index]), t.frame_size[index])
        crop = crop_image(frame, affine_matrix(t.center[index], t.scale[index]))
        return (torch.from_numpy(crop), torch.from_numpy(t.keypoints_2d[index]),
                torch.from_numpy(t.crop_pixels[index]), torch.from_numpy(t.pose3d[index][None]), index)
