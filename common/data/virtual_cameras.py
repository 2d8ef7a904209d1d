"""3D-only training data: project world-frame motion through randomly sampled virtual cameras.

This is how Uplift-and-Upsample pretrains on AMASS (3D motion capture without video): every
3D sequence becomes K camera streams, each seen by a pinhole camera placed at a random yaw,
distance and height around the subject and looking at it, like the Human3.6M cameras.
"""
import numpy as np

from common.data.pose_codec import normalize_screen_coordinates

RESOLUTION = 1000        # px, square image
FOCAL_LENGTH = 1145.0    # px, close to the Human3.6M cameras


def sample_camera(rng, target, distance=(3.5, 6.0), height=(0.8, 2.0)):
    """A random look-at camera: (rotation [3, 3] world -> camera rows (right, down, forward),
    centre [3] in world metres). target -- [3] point the camera looks at (world, z up)."""
    yaw = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(*distance)
    centre = np.array([target[0] + radius * np.cos(yaw), target[1] + radius * np.sin(yaw),
                       rng.uniform(*height)])
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward]), centre


def project_virtual(world, rotation, centre):
    """world [T, J, 3] metres -> (camera-frame poses [T, J, 3], normalised 2D [T, J, 2],
    normalised intrinsics [9])."""
    camera = ((world - centre) @ rotation.T).astype(np.float32)
    pixels = camera[..., :2] / camera[..., 2:3] * FOCAL_LENGTH + RESOLUTION / 2
    pose2d = normalize_screen_coordinates(pixels, RESOLUTION, RESOLUTION)
    focal = 2 * FOCAL_LENGTH / RESOLUTION
    intrinsics = np.array([focal, focal, 0, 0, 0, 0, 0, 0, 0], np.float32)
    return camera, pose2d, intrinsics


def virtual_streams(world, count, rng, root_joint=0):
    """``count`` random views of one world-frame sequence [T, J, 3]: a list of (camera-frame
    poses [T, J, 3], 2D, intrinsics)."""
    target = world[:, root_joint].mean(0)
    target = np.array([target[0], target[1], max(float(target[2]), 0.9)])
    views = []
    for _ in range(count):
        camera, pose2d, intrinsics = project_virtual(world, *sample_camera(rng, target))
        views.append((camera, pose2d, intrinsics))
    return views
