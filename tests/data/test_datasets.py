"""Human3.6M reader on small files written in the VideoPose3D layout, and the cameras."""
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from common.data.camera import camera_to_world, load_h36m_cameras, project_to_2d, qrot, world_to_camera
from common.data.pose_codec import image_coordinates, normalize_screen_coordinates
from common.data.datasets import DataConfig, load_dataset
from common.errors import UserError
from common.data.skeleton import H36M_17, H36M_KEPT_JOINTS

CAMERAS = load_h36m_cameras()


def write_h36m(directory, extra_frames=0, extra_subject=True, layout_name=True):
    """Two subjects (S1 train, S9 test) x two actions, 32 raw joints, GT-projected 2D."""
    rng = np.random.default_rng(0)
    positions_3d, positions_2d = {}, {}
    for subject in ('S1', 'S9'):
        positions_3d[subject], positions_2d[subject] = {}, {}
        for action, length in (('Walking 1', 30), ('Eating', 20)):
            world = (rng.normal(0, 0.2, (length, 32, 3)) + [0.0, 0.0, 1.0]).astype(np.float32)
            positions_3d[subject][action] = world
            streams = []
            for camera in CAMERAS[subject]:
                cam = world_to_camera(world[:, list(H36M_KEPT_JOINTS)], camera.orientation, camera.translation)
                pixels = project_to_2d(cam, camera)
                streams.append(np.concatenate([pixels, pixels[-1:].repeat(extra_frames, 0)]))
            positions_2d[subject][action] = streams
    if extra_subject:  # 2D-only subject, as in the detector files
        positions_2d['S2'] = {'Walking': [np.zeros((5, 17, 2), np.float32)] * 4}
    metadata = {'num_joints': 17, 'keypoints_symmetry': [[np.int64(j) for j in H36M_17.joints_left],
                                                         [np.int64(j) for j in H36M_17.joints_right]]}
    if layout_name:
        metadata['layout_name'] = 'h36m'
    os.makedirs(directory, exist_ok=True)
    np.savez_compressed(os.path.join(directory, 'data_3d_h36m.npz'), positions_3d=positions_3d)
    np.savez_compressed(os.path.join(directory, 'data_2d_h36m_gt.npz'), positions_2d=positions_2d, metadata=metadata)
    return positions_3d, positions_2d


def config(root, **kw):
    return DataConfig(**{'root_path': str(root), 'keypoints': 'gt', 'subjects_train': ['S1'], 'subjects_test': ['S9'],
                         **kw})


def test_quaternion_rotation_matches_scipy():
    q = CAMERAS['S9'][2].orientation.astype(np.float64)
    v = np.random.default_rng(1).normal(size=(5, 3))
    expected = Rotation.from_quat([q[1], q[2], q[3], q[0]]).apply(v)
    np.testing.assert_allclose(qrot(q, v), expected, atol=1e-6)
    cam = CAMERAS['S9'][2]
    np.testing.assert_allclose(camera_to_world(world_to_camera(v, cam.orientation, cam.translation),
                                               cam.orientation, cam.translation), v, atol=1e-5)


def test_normalisation_divides_both_axes_by_width():
    pixels = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]], np.float32)
    normalised = normalize_screen_coordinates(pixels, 1000, 1002)
    np.testing.assert_allclose(normalised, [[-1, -1.002], [1, 1.002], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(image_coordinates(normalised, 1000, 1002), pixels, atol=1e-3)


def test_reader_follows_the_reference_pipeline(tmp_path):
    positions_3d, positions_2d = write_h36m(tmp_path, extra_frames=3, layout_name=False)
    train, test, spec = load_dataset(config(tmp_path))
    assert len(train) == 8 and len(test) == 8 and spec.root_joint == 0
    seq = next(s for s in test if s.action == 'Walking 1' and s.camera == 3)
    camera = CAMERAS['S9'][3]
    world = positions_3d['S9']['Walking 1'][:, list(H36M_KEPT_JOINTS)]
    absolute = world_to_camera(world, camera.orientation, camera.translation)
    np.testing.assert_allclose(seq.trajectory, absolute[:, 0], atol=1e-5)  # the root's path, kept apart
    assert np.all(seq.pose3d[:, 0] == 0)
    np.testing.assert_allclose(seq.pose3d[:, 1:], absolute[:, 1:] - absolute[:, :1], atol=1e-5)
    assert len(seq) == 30  # 2D trimmed to the mocap length
    expected = normalize_screen_coordinates(positions_2d['S9']['Walking 1'][3][:30], 1000, 1002)
    np.testing.assert_allclose(seq.pose2d, expected, atol=1e-6)
    assert seq.group == 'Walking' and seq.image_size == (1000, 1002)
    np.testing.assert_allclose(seq.intrinsics[:2], camera.focal_length / 500, rtol=1e-6)


def test_filters_downsample_and_subset(tmp_path):
    write_h36m(tmp_path)
    train, test, _ = load_dataset(config(tmp_path, actions=['Walk'], downsample=2, subset=0.5))
    assert {s.action for s in train + test} == {'Walking 1'}
    assert all(len(s) == 15 for s in test)  # downsampled, not subset
    assert all(len(s) == 8 for s in train)  # 15 of 30 frames, every 2nd


def test_test_only_skips_the_training_subjects(tmp_path):
    write_h36m(tmp_path)
    train, test, _ = load_dataset(config(tmp_path))
    only_train, only_test, _ = load_dataset(config(tmp_path, test_only=True, subjects_train=['S_absent']))
    assert train and only_train == [] and [s.action for s in only_test] == [s.action for s in test]


def test_dataset_folder_fallback(tmp_path, monkeypatch, capsys):
    write_h36m(tmp_path / 'dataset')
    monkeypatch.chdir(tmp_path)
    load_dataset(config(tmp_path / 'data'))
    assert 'dataset/' in capsys.readouterr().out


@pytest.mark.parametrize('problem', ['missing', 'short_2d', 'wrong_keys', 'joints'])
def test_bad_files_give_one_line_errors(tmp_path, problem):
    write_h36m(tmp_path)
    path2d = tmp_path / 'data_2d_h36m_gt.npz'
    if problem == 'missing':
        os.remove(path2d)
    elif problem == 'wrong_keys':
        np.savez(path2d, something=np.zeros(3))
    else:
        with np.load(path2d, allow_pickle=True) as archive:
            positions, metadata = archive['positions_2d'].item(), archive['metadata'].item()
        stream = positions['S1']['Eating'][0]
        positions['S1']['Eating'][0] = stream[:5] if problem == 'short_2d' else stream[:, :16]
        np.savez(path2d, positions_2d=positions, metadata=metadata)
    with pytest.raises(UserError) as err:
        load_dataset(config(tmp_path))
    assert '\n' not in str(err.value)


class _CreatesFile:
    """Unpickling this calls open(path, 'w'): what a malicious dataset file could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_dataset_file_cannot_run_code(tmp_path):
    write_h36m(tmp_path)
    marker = tmp_path / 'pwned'
    np.savez(tmp_path / 'data_3d_h36m.npz', positions_3d=np.array(_CreatesFile(str(marker)), dtype=object))
    with pytest.raises(UserError, match='refused'):
        load_dataset(config(tmp_path))
    assert not marker.exists()
