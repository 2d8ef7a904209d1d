"""The H36M-Toolbox reader: the release's affine crop (against the full-model fixture's crop
keypoints and a hand-made image), the frame size recovered from the labels, and the synthetic
images drawing the joints where their labels say."""
import os

import numpy as np
import pytest
import torch

from common.data.h36m_toolbox import _frame_size, affine_matrix, crop_image


def test_affine_matches_the_release_crop_keypoints(reference_dir):
    fx = torch.load(os.path.join(reference_dir, 'models', 'context_pose_full_small.pt'), weights_only=True)
    meta, camera = fx['config']['sample_meta'], fx['config']['camera']
    centers, scales = np.array([m['center'] for m in meta]), np.array([m['scale'] for m in meta])
    pixels = (fx['keypoints_2d'].double().numpy() + [1, camera['h'] / camera['w']]) * camera['w'] / 2
    matrices = affine_matrix(centers, scales)
    crop = np.einsum('nij,nkj->nki', matrices[:, :, :2], pixels) + matrices[:, None, :, 2]
    np.testing.assert_allclose(crop, fx['keypoints_2d_crop'].numpy(), atol=1e-4)
    sizes = _frame_size(fx['keypoints_2d'].double().numpy(), fx['keypoints_2d_crop'].numpy(), centers, scales)
    np.testing.assert_allclose(sizes, [[1000, 1002]] * 2, atol=0.01)


def test_crop_of_a_ramp_is_the_inverse_map():
    """Frame pixel (x, y) holds x (channel 0) and y (channel 1): every crop pixel then shows
    the frame position it samples, bilinear, black outside the frame."""
    ys, xs = np.mgrid[0:250, 0:250]
    frame = np.stack([xs, ys, np.full_like(xs, 200)], -1).astype(np.uint8)
    # a box 192 frame pixels wide centred at (125, 127): (192 - 1) frame px per 191 crop px
    matrix = affine_matrix((125.0, 127.0), (0.96, 1.28))
    crop = crop_image(frame, matrix)
    assert crop.shape == (256, 192, 3)
    step = (0.96 * 200 - 1) / 191
    for cx, cy in ((0, 10), (95.5, 127.5), (191, 249), (40, 200)):
        expected = (125 + (cx - 95.5) * step, 127 + (cy - 127.5) * step)
        assert crop[int(cy), int(cx), :2] == pytest.approx(np.rint(expected), abs=1)
    # crop row 250 samples frame row 249.5: half the last row, half the black outside (as cv2.warpAffine)
    assert crop[249, 191, 2] == 200 and crop[250, 191, 2] == 100 and crop[255, 191, 2] == 0
    far = crop_image(frame, affine_matrix((400.0, 400.0), (0.96, 1.28)))
    assert far.max() == 0   # the box lies outside the frame: all black


def test_synthetic_frames_draw_the_labelled_joints(tmp_path):
    from common.data.h36m_toolbox import ToolboxImages, read_labels
    from common.data.synthetic_images import ensure_synthetic_images
    root = ensure_synthetic_images(str(tmp_path / 'synthetic_images'), frames=(2, 2))
    table = read_labels(os.path.join(root, 'h36m_train.pkl'), source='gt')
    assert len(table) == 2 * 3 * 2 * 2 and table.stream_names[0] == 's_01_act_02_subact_01_ca_01'
    np.testing.assert_allclose(table.frame_size, [[256, 256]] * len(table), atol=0.01)
    crop, keypoints_2d, crop_pixels, target, index = ToolboxImages(table, os.path.join(root, 'images'))[3]
    assert index == 3 and torch.equal(target[0, 0], torch.zeros(3))
    inside = (crop_pixels[:, 0] >= 0) & (crop_pixels[:, 0] < 191) & (crop_pixels[:, 1] >= 0) & (crop_pixels[:, 1] < 255)
    x, y = crop_pixels[inside].round().long().T
    # drawn bones are saturated colours on a dull background (channel spread > 60 on a body pixel)
    colours = crop[y, x].int()
    assert ((colours.max(1).values - colours.min(1).values > 60) | (colours.min(1).values > 180)).all()
