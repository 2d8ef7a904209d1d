"""Converted AMASS (AMASS-to-3DHPE files) as Uplift-and-Upsample reads it: the sample file of
../shared/reference/formats, selection by the release's splits, joint order, frame rate, and the
Human3.6M cameras the windows are seen through."""
import os
import shutil

import numpy as np
import pytest
import torch

from common.data.amass import AMASS_TO_H36M, read_converted_amass, resample, split_patterns
from common.data.amass_views import CameraDrawWindows, h36m_view_table, view_through, world_sequences
from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
from common.data.datasets import DataConfig, load_dataset
from common.data.generators import WindowConfig
from common.data.pose_codec import normalize_screen_coordinates
from common.data.skeleton import H36M_17
from common.errors import UserError


@pytest.fixture(scope='module')
def sample(reference_dir):
    return np.load(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), allow_pickle=True)['positions_3d'].item()


@pytest.fixture()
def amass_dir(tmp_path, reference_dir):
    """The sample as two sub-datasets: CMU (training split) and SFU (validation split)."""
    for name in ('CMU', 'SFU', 'Unlisted'):
        shutil.copy(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), tmp_path / f'{name}.npz')
    return str(tmp_path)


def test_joint_order_by_hand(amass_dir, sample):
    found = read_converted_amass(amass_dir, split_patterns(['CMU/01/01_01_poses']))
    assert [(d, s, q) for d, s, q, _ in found] == [('CMU', '01', '01_01_poses')]
    world, raw = found[0][3], sample['01']['01_01_poses']['positions_3d']
    assert world.dtype == np.float32 and world.shape == (120, 17, 3)
    # the regressor gives the legs on the other side: its joint 1 is the left hip, 4 the right hip
    for ours, theirs in [(0, 0), (1, 4), (3, 6), (4, 1), (6, 3), (8, 8), (10, 10), (13, 13), (16, 16)]:
        np.testing.assert_allclose(world[:, ours], raw[:, theirs], atol=1e-6)
    assert list(AMASS_TO_H36M) == [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    # the hand check on frame 0: right hip (ours 1) is the regressor's joint 4
    np.testing.assert_allclose(world[0, 1], [-0.96475321, -0.11865789, 0.94830221], atol=1e-6)


def test_selection_by_split(amass_dir):
    train = read_converted_amass(amass_dir, split_patterns(['train']))
    val = read_converted_amass(amass_dir, split_patterns(['val']))
    assert {d for d, *_ in train} == {'CMU'} and {d for d, *_ in val} == {'SFU'}   # 'Unlisted' in neither
    assert len(train) == 4 and [len(w) for *_, w in train] == [120, 95, 105, 80]
    picked = read_converted_amass(amass_dir, split_patterns(['SFU/02/.*_04_.*', 'CMU/0[12]/01_02_poses']))
    assert [(d, s, q) for d, s, q, _ in picked] == [('CMU', '01', '01_02_poses'), ('SFU', '02', '02_04_poses')]


def test_frame_rate(amass_dir, sample):
    full = read_converted_amass(amass_dir, split_patterns(['CMU/01/01_01_poses']))[0][3]
    halves = read_converted_amass(amass_dir, split_patterns(['CMU/01/01_01_poses']), frame_rate=25)
    assert len(halves) == 2   # two phases: every window of the release's doubled stride
    np.testing.assert_array_equal(halves[0][3], full[0::2])
    np.testing.assert_array_equal(halves[1][3], full[1::2])
    assert len(read_converted_amass(amass_dir, split_patterns(['CMU/01/01_01_poses']), 25, phases=False)) == 1
    with pytest.raises(UserError, match='not a multiple of the target frame rate 30'):
        resample(full, 50.0, 30, 'x')
    train, test, spec = load_dataset(DataConfig(dataset='amass', root_path=amass_dir, reader_options={'frame_rate': 25}))
    assert spec.fps == 25 and len(train) == 8 and len(test) == 4


def test_projection_is_the_human36m_camera_model(sample):
    views = h36m_view_table()
    assert len(views.orientation) == 28
    camera = load_h36m_cameras()['S5'][2]
    index = 4 + 2   # S1's four cameras come first
    world = sample['02']['02_03_poses']['positions_3d'][:, list(AMASS_TO_H36M)].astype(np.float32)
    local, pose2d = view_through(torch.from_numpy(world)[None], views.orientation[index:index + 1],
                                 views.translation[index:index + 1], views.intrinsics[index:index + 1])
    expected_local = world_to_camera(world, camera.orientation, camera.translation)
    expected_2d = normalize_screen_coordinates(project_to_2d(expected_local, camera), camera.res_w, camera.res_h)
    np.testing.assert_allclose(local[0].numpy(), expected_local, atol=1e-5)
    np.testing.assert_allclose(pose2d[0].numpy(), expected_2d, atol=1e-5)


def test_windows_draw_cameras_and_flip_in_the_world(sample):
    world = sample['01']['01_01_poses']['positions_3d'][:, list(AMASS_TO_H36M)].astype(np.float32)
    views = h36m_view_table()
    seqs = world_sequences([('CMU', '01', 'a', world)], views, np.random.default_rng(0))
    windows = CameraDrawWindows(seqs, WindowConfig('seq2frame', frames=9, flip=True, seed=3),
                                H36M_17.flip_pairs, H36M_17.flip_pairs)
    windows.set_epoch(1)
    index = list(range(0, 120, 7))
    batch = windows.__getitems__(index)
    assert len(set(windows.window_camera[index].tolist())) > 3
    for row, i in enumerate(index):
        cam = int(windows.window_camera[i])
        frames = np.clip(i + np.arange(-4, 5), 0, 119)
        clip = world[frames].copy()
        if windows.flipped[i]:   # mirror the world x, swap left and right, camera unchanged
            clip[..., 0] *= -1
            left, right = H36M_17.flip_pairs
            clip[:, left + right] = clip[:, right + left]
        local, pose2d = view_through(torch.from_numpy(clip)[None], views.orientation[cam:cam + 1],
                                     views.translation[cam:cam + 1], views.intrinsics[cam:cam + 1])
        np.testing.assert_allclose(batch['input2d'][row].numpy(), pose2d[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(batch['target3d'][row].numpy(), (local[0] - local[0, :, :1]).numpy(), atol=1e-6)
        assert batch['target3d'][row, :, 0].abs().max() == 0
    assert windows.flipped[index].any() and not windows.flipped[index].all()


def test_bad_folders(tmp_path, reference_dir):
    with pytest.raises(UserError, match='holds no converted AMASS file'):
        read_converted_amass(str(tmp_path), split_patterns(['train']))
    data = np.load(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), allow_pickle=True)['positions_3d'].item()
    data['01']['01_01_poses']['positions_3d'] = data['01']['01_01_poses']['positions_3d'][:, :14]
    np.savez(tmp_path / 'CMU.npz', positions_3d=data)
    with pytest.raises(UserError, match='has 14 joints, expected the 17'):
        read_converted_amass(str(tmp_path), split_patterns(['train']))
