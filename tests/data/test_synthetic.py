"""The embedded synthetic datasets: formats, determinism, and human-like motion."""
import os

import numpy as np
import pytest

from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
from common.data.skeleton import H36M_KEPT_JOINTS, H36M_RAW_PARENTS
from common.data.synthetic import GROUPS, ensure_synthetic


@pytest.fixture(scope='module')
def h36m_dir(tmp_path_factory):
    return ensure_synthetic(str(tmp_path_factory.mktemp('synthetic')), 'h36m')


def entries(path, key):
    with np.load(path, allow_pickle=True) as archive:
        return archive[key].item()


def test_formats_match_the_videopose3d_files(h36m_dir):
    poses3d = entries(os.path.join(h36m_dir, 'data_3d_h36m.npz'), 'positions_3d')
    gt = entries(os.path.join(h36m_dir, 'data_2d_h36m_gt.npz'), 'positions_2d')
    cpn = entries(os.path.join(h36m_dir, 'data_2d_h36m_cpn_ft_h36m_dbb.npz'), 'positions_2d')
    meta = entries(os.path.join(h36m_dir, 'data_2d_h36m_gt.npz'), 'metadata')
    assert sorted(poses3d) == sorted(['S1', 'S5', 'S6', 'S7', 'S8', 'S9', 'S11'])
    assert 'layout_name' not in meta and meta['keypoints_symmetry'][0] == [4, 5, 6, 11, 12, 13]
    assert 'Directions' not in poses3d['S11'] and 'Directions 1' in poses3d['S11']
    for subject, actions in poses3d.items():
        assert {a.split(' ')[0] for a in actions} == set(GROUPS)
        for action, world in actions.items():
            assert world.dtype == np.float32 and world.shape[1:] == (32, 3)
            assert len(gt[subject][action]) == 4 and len(cpn[subject][action]) == 4
            for g, c in zip(gt[subject][action], cpn[subject][action]):
                assert g.shape == (len(world), 17, 2) and g.dtype == np.float32
                assert len(c) >= len(world)


def test_gt_2d_is_the_projection_of_the_3d(h36m_dir):
    poses3d = entries(os.path.join(h36m_dir, 'data_3d_h36m.npz'), 'positions_3d')
    gt = entries(os.path.join(h36m_dir, 'data_2d_h36m_gt.npz'), 'positions_2d')
    cameras = load_h36m_cameras()
    world = poses3d['S9']['Walking 1'][:, list(H36M_KEPT_JOINTS)]
    for camera, stream in zip(cameras['S9'], gt['S9']['Walking 1']):
        pixels = project_to_2d(world_to_camera(world, camera.orientation, camera.translation), camera)
        np.testing.assert_allclose(pixels, stream, atol=1e-3)
        assert (stream[..., 0] > 0).all() and (stream[..., 0] < camera.res_w).all()  # in view


def test_bodies_are_rigid_differ_and_move_like_people(h36m_dir):
    poses3d = entries(os.path.join(h36m_dir, 'data_3d_h36m.npz'), 'positions_3d')
    bones = {}
    for subject in ('S1', 'S9'):
        world = poses3d[subject]['Walking 1'] if 'Walking 1' in poses3d[subject] else poses3d[subject]['Walking']
        lengths = np.linalg.norm(world[:, 1:] - world[:, list(H36M_RAW_PARENTS[1:])], axis=-1)
        assert lengths.std(0).max() < 1e-4  # rigid bones
        bones[subject] = lengths[0]
        speed = np.linalg.norm(np.diff(world, axis=0), axis=-1).mean() * 50
        assert 0.1 < speed < 3.0
        assert abs(world[..., 2].min(1)).max() < 0.12  # some joint near the floor, every frame
        height = world[:, 15, 2].max()
        assert 1.3 < height < 2.1
    assert np.abs(bones['S1'] - bones['S9']).max() > 0.005


def test_generation_is_deterministic(tmp_path):
    from common.data.synthetic import write_3dhp
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir(), b.mkdir()
    write_3dhp(str(a), seed=0)
    write_3dhp(str(b), seed=0)
    first = entries(str(a / 'data_test_3dhp.npz'), 'data')
    second = entries(str(b / 'data_test_3dhp.npz'), 'data')
    for name in first:
        assert np.array_equal(first[name]['data_3d'], second[name]['data_3d'])
    assert first['TS5']['data_2d'][..., 1].max() < 1080 + 200


def test_synthetic_goes_through_the_real_readers(tmp_path):
    from common.data.datasets import DataConfig, load_dataset
    ensure_synthetic(str(tmp_path / 'synthetic_3dhp'), '3dhp')
    for name, joints in (('synthetic_3dhp', 17), ('synthetic_mpii3d', 14)):
        train, test, spec = load_dataset(DataConfig(dataset=name, root_path=str(tmp_path)))
        assert spec.num_joints == joints and len(test) >= 6 and train
        assert any(s.valid is not None and not s.valid.all() for s in test)
