"""Detector-like errors for the synthetic 2D files: what a 2D detector gets wrong, in pixels."""
import numpy as np
from scipy.ndimage import gaussian_filter1d

from common.data.skeleton import H36M_17


def detector_errors(pixels, rng, skeleton=H36M_17, jitter_px=6.0, white_px=1.0, outlier_px=25.0):
    """Detector-like 2D: temporally correlated jitter, occasional larger errors (2 % of the joints)
    and left/right confusions (1 % of the frames). pixels [T, J, 2] -> (noisy [T, J, 2], outlier
    mask [T, J])."""
    frames, joints = pixels.shape[:2]
    jitter = gaussian_filter1d(rng.normal(0, jitter_px, pixels.shape), 2.0, axis=0) + rng.normal(0, white_px, pixels.shape)
    noisy = pixels + jitter
    outliers = rng.random((frames, joints)) < 0.02
    noisy += outliers[..., None] * rng.normal(0, outlier_px, pixels.shape)
    swaps = rng.random(frames) < 0.01
    left, right = list(skeleton.joints_left), list(skeleton.joints_right)
    noisy[np.ix_(swaps, left + right)] = noisy[np.ix_(swaps, right + left)]
    return noisy, outliers
