"""Cameras: Human3.6M parameters, world <-> camera transforms, projection, normalisation.

Conventions (see docs of the VideoPose3D files): quaternions are (w, x, y, z) and
rotate camera-frame vectors into the world frame; translations are camera centres
in the world frame (metres once loaded); camera frame x right, y down, z forward.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from common.data.pose_codec import normalize_screen_coordinates

CAMERA_FILE = os.path.join(os.path.dirname(__file__), 'h36m_cameras.json')


@dataclass(frozen=True)
class Camera:
    """One calibrated camera. Extrinsics are None for subjects without 3D (S2-S4)."""
    id: str
    res_w: int
    res_h: int
    center: np.ndarray            # (2,) px
    focal_length: np.ndarray      # (2,) px
    radial_distortion: np.ndarray  # (3,)
    tangential_distortion: np.ndarray  # (2,)
    azimuth: float
    orientation: Optional[np.ndarray] = None  # (4,) quaternion (w, x, y, z), camera -> world
    translation: Optional[np.ndarray] = None  # (3,) metres, camera centre in world

    def normalized_intrinsics(self) -> np.ndarray:
        """[fx, fy, cx, cy, k1, k2, k3, p1, p2] in normalised screen units (float32)."""
        centre = normalize_screen_coordinates(self.center, self.res_w, self.res_h)
        focal = self.focal_length / self.res_w * 2
        return np.concatenate([focal, centre, self.radial_distortion,
                               self.tangential_distortion]).astype(np.float32)


def load_h36m_cameras(path: str = CAMERA_FILE) -> Dict[str, List[Camera]]:
    """subject -> list of the 4 cameras (index order of the 2D files), extrinsics in metres."""
    with open(path) as handle:
        table = json.load(handle)
    cameras = {}
    for subject, extrinsics in table['extrinsics'].items():
        cameras[subject] = []
        for index, intr in enumerate(table['intrinsics']):
            ext = extrinsics[index] if extrinsics else {}
            cameras[subject].append(Camera(
                id=intr['id'], res_w=intr['res_w'], res_h=intr['res_h'],
                center=np.asarray(intr['center'], np.float32),
                focal_length=np.asarray(intr['focal_length'], np.float32),
                radial_distortion=np.asarray(intr['radial_distortion'], np.float32),
                tangential_distortion=np.asarray(intr['tangential_distortion'], np.float32),
                azimuth=float(intr['azimuth']),
                orientation=np.asarray(ext['orientation'], np.float32) if ext else None,
                translation=np.asarray(ext['translation'], np.float32) / 1000 if ext else None))
    return cameras


def qrot(q, v):
    """Rotate vectors v [..., 3] by unit quaternions q [..., 4] (w, x, y, z)."""
    q = np.broadcast_to(q, v.shape[:-1] + (4,))
    w, u = q[..., :1], q[..., 1:]
    uv = np.cross(u, v)
    return v + 2 * (w * uv + np.cross(u, uv))


def qinverse(q):
    """Conjugate (inverse of a unit quaternion)."""
    return q * np.array([1, -1, -1, -1], dtype=q.dtype)


def world_to_camera(x, orientation, translation):
    """[..., 3] world (metres) -> camera frame: R(q)^T (x - t)."""
    return qrot(qinverse(orientation).astype(x.dtype), x - translation).astype(x.dtype)


def camera_to_world(x, orientation, translation):
    """[..., 3] camera frame -> world: R(q) x + t."""
    return (qrot(orientation.astype(x.dtype), x) + translation).astype(x.dtype)


def project_to_2d(x, camera: Camera):
    """Project camera-frame points [..., 3] to pixels [..., 2] with the Human3.6M
    distortion model (x/z and y/z clamped to [-1, 1]; non-OpenCV tangential term)."""
    xy = np.clip(x[..., :2] / x[..., 2:3], -1, 1)
    k, p = camera.radial_distortion, camera.tangential_distortion
    r2 = np.sum(xy ** 2, axis=-1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tangential = np.sum(p * xy, axis=-1, keepdims=True)
    distorted = xy * (radial + tangential) + p * r2
    return (camera.focal_length * distorted + camera.center).astype(x.dtype)
