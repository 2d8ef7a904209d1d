"""The dataset readers behind one name -> reader table: Human3.6M (VideoPose3D files,
unchanged), 3D-only streams seen through virtual cameras, the synthetic stand-in, custom 2D
files and saved predictions here; the MPI-INF-3DHP readers in common/data/mpi_inf_3dhp.py.

Every reader returns ``(train, test, spec)``: two lists of :class:`Sequence` (one camera stream
each) and a :class:`DatasetSpec` (common/data/records.py).
"""
import os

import numpy as np

import common.data.amass  # noqa: F401  (converted AMASS; registers itself in READERS)
import common.data.mpi_inf_3dhp  # noqa: F401  (its readers register themselves in READERS)
from common.data.camera import load_h36m_cameras, world_to_camera
from common.errors import UserError
from common.data.pose_codec import normalize_screen_coordinates, split_trajectory
from common.data.records import (READERS, DataConfig, DatasetSpec, Sequence, check_finite_2d, expect_dict,  # noqa: F401
                                 find_data_file, load_npz_entries, register_dataset)
from common.data.skeleton import H36M_17, h36m_raw_to_17


def load_dataset(config: DataConfig):
    """(train sequences, test sequences, DatasetSpec) for ``config.dataset``."""
    if config.dataset not in READERS:
        raise UserError(f"unknown dataset '{config.dataset}'; choose one of: {', '.join(sorted(READERS))}")
    return READERS[config.dataset](config)



# ----------------------------------------------------------------------------- Human3.6M

H36M_SPEC = DatasetSpec(name='h36m', skeleton=H36M_17, root_joint=0,
                        kps_left=H36M_17.joints_left, kps_right=H36M_17.joints_right)

H36M_TRAIN = ('S1', 'S5', 'S6', 'S7', 'S8')
H36M_TEST = ('S9', 'S11')
H36M_ORIGIN = 'prepare it with VideoPose3D\'s data/prepare_data_h36m.py (see README "Data")'


def read_h36m_3d(path):
    """subject -> action -> [N, 17, 3] world-frame metres (the 17 kept joints)."""
    positions = expect_dict(load_npz_entries(path, ['positions_3d'])['positions_3d'], path, 'positions_3d')
    out = {}
    for subject, actions in positions.items():
        out[subject] = {}
        for action, array in expect_dict(actions, path, f'positions_3d[{subject!r}]').items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 3 or array.shape[1:] not in ((32, 3), (17, 3)):
                raise UserError(f"'{path}': {subject}/{action} has shape {array.shape}, expected (N, 32, 3)")
            out[subject][action] = h36m_raw_to_17(array) if array.shape[1] == 32 else array
    return out


def read_h36m_2d(path, num_joints=17):
    """(positions_2d subject -> action -> list of [N, J, 2] pixels, (kps_left, kps_right), layout name
    of the metadata or ''). Streams of 3 channels (x, y, keypoint probability: the COCO-layout
    detections) are cut to x, y, as the in-the-wild releases train."""
    entries = load_npz_entries(path, ['positions_2d', 'metadata'])
    positions = expect_dict(entries['positions_2d'], path, 'positions_2d')
    metadata = expect_dict(entries['metadata'], path, 'metadata')
    symmetry = metadata.get('keypoints_symmetry')
    if symmetry is None or len(symmetry) != 2:
        raise UserError(f"'{path}': metadata lacks keypoints_symmetry [[left...], [right...]]")
    kps_left, kps_right = ([int(j) for j in side] for side in symmetry)
    for subject, actions in positions.items():
        for action, streams in expect_dict(actions, path, f'positions_2d[{subject!r}]').items():
            for cam, stream in enumerate(streams):
                if np.ndim(stream) != 3 or np.shape(stream)[1] != num_joints or np.shape(stream)[2] not in (2, 3):
                    raise UserError(f"'{path}': {subject}/{action} camera {cam} has shape {np.shape(stream)}, "
                                    f"expected (N, {num_joints}, 2) for this {num_joints}-joint dataset")
                if np.shape(stream)[2] == 3:
                    streams[cam] = np.asarray(stream)[..., :2]
    return positions, (tuple(kps_left), tuple(kps_right)), str(metadata.get('layout_name', ''))


def _select(names, filters):
    return [n for n in names if filters is None or any(n.startswith(f) for f in filters)]


def load_3d_only(config: DataConfig, path3d):
    """Streams from a 3D file alone (AMASS-style pretraining): every sequence is seen by
    ``config.virtual_cameras`` random virtual cameras; no 2D file is read."""
    from common.data.virtual_cameras import virtual_streams
    poses3d = read_h36m_3d(path3d)
    subjects_train = list(config.subjects_train if config.subjects_train is not None else
                          [s for s in poses3d if s not in H36M_TEST])
    subjects_test = list(config.subjects_test if config.subjects_test is not None else
                         [s for s in H36M_TEST if s in poses3d])
    rng = np.random.default_rng(config.seed)

    def fetch(subjects):
        sequences = []
        for subject in subjects:
            if subject not in poses3d:
                raise UserError(f"subject {subject} not in '{path3d}' (has {', '.join(poses3d)})")
            for action in _select(sorted(poses3d[subject]), config.actions):
                world = poses3d[subject][action][::config.downsample]
                for index, (pose3d, pose2d, intrinsics) in enumerate(
                        virtual_streams(world, config.virtual_cameras, rng)):
                    relative, trajectory = split_trajectory(pose3d, H36M_17.root)
                    sequences.append(Sequence(pose2d=pose2d, pose3d=relative, subject=subject, action=action,
                                              camera=index, group=action.split(' ')[0], intrinsics=intrinsics,
                                              image_size=(1000, 1000), trajectory=trajectory))
        return sequences

    return ([] if config.test_only else fetch(subjects_train)), fetch(subjects_test), H36M_SPEC


def _check_h36m_files(poses3d, poses2d, subjects, path3d, path2d):
    """One-line errors for subjects, actions or camera streams the two files do not share, and for
    2D streams shorter than their mocap."""
    for subject in subjects:
        if subject not in poses3d:
            raise UserError(f"subject {subject} not in '{path3d}' (has {', '.join(poses3d)})")
        if subject not in poses2d:
            raise UserError(f"subject {subject} not in '{path2d}'")
        for action, world in poses3d[subject].items():
            if action not in poses2d[subject]:
                raise UserError(f"'{path2d}' lacks action '{action}' of subject {subject}")
            streams = poses2d[subject][action]
            if len(streams) != 4:
                raise UserError(f"'{path2d}': {subject}/{action} has {len(streams)} camera streams, expected 4")
            for cam, stream in enumerate(streams):
                if len(stream) < len(world):
                    raise UserError(f"'{path2d}': {subject}/{action} camera {cam} has {len(stream)} frames, "
                                    f"fewer than the {len(world)} of the 3D file")


@register_dataset('h36m')
def load_h36m(config: DataConfig):
    """Human3.6M in the VideoPose3D layout: data_3d_h36m.npz + data_2d_h36m_<keypoints>.npz."""
    root = config.root_path
    if config.virtual_cameras:
        return load_3d_only(config, find_data_file(root, 'data_3d_h36m.npz', H36M_ORIGIN))
    path3d = find_data_file(root, 'data_3d_h36m.npz', H36M_ORIGIN)
    path2d = find_data_file(root, f'data_2d_h36m_{config.keypoints}.npz',
                            H36M_ORIGIN if config.keypoints in ('gt', 'cpn_ft_h36m_dbb') else
                            f"unknown -k '{config.keypoints}': no such 2D file")
    cameras = load_h36m_cameras()
    poses3d = read_h36m_3d(path3d)
    poses2d, (kps_left, kps_right), layout = read_h36m_2d(path2d)
    spec = DatasetSpec(name='h36m', skeleton=H36M_17, root_joint=0, kps_left=kps_left, kps_right=kps_right,
                       input_layout='coco_17' if layout == 'coco' else None)

    subjects_train = list(config.subjects_train if config.subjects_train is not None else H36M_TRAIN)
    subjects_test = list(config.subjects_test if config.subjects_test is not None else H36M_TEST)
    if config.test_only:
        subjects_train = []
    _check_h36m_files(poses3d, poses2d, subjects_train + subjects_test, path3d, path2d)

    # per stream: world -> camera, the root's trajectory apart, 2D trimmed to the mocap length
    def fetch(subjects, action_filter, subset=1.0, rng=None):
        sequences = []
        for subject in subjects:
            for action in _select(list(poses2d[subject]), action_filter):
                if action not in poses3d[subject]:
                    continue
                world = poses3d[subject][action]
                for cam_index, camera in enumerate(cameras[subject]):
                    pos3d, trajectory = split_trajectory(
                        world_to_camera(world, camera.orientation, camera.translation), H36M_17.root)
                    stream = np.asarray(poses2d[subject][action][cam_index][:len(world)], np.float32)
                    check_finite_2d(stream, path2d, f'{subject}/{action} camera {cam_index}')
                    pose2d = normalize_screen_coordinates(stream, camera.res_w, camera.res_h)
                    start, stop = 0, len(pose2d)
                    if subset < 1:  # a contiguous clip of each stream, as VideoPose3D's --subset
                        n_frames = max(1, int(round(len(pose2d) * subset)))
                        start = int(rng.integers(0, len(pose2d) - n_frames + 1))
                        stop = start + n_frames
                    step = config.downsample
                    sequences.append(Sequence(
                        pose2d=pose2d[start:stop:step], pose3d=pos3d[start:stop:step], subject=subject,
                        action=action, camera=cam_index, group=action.split(' ')[0],
                        intrinsics=camera.normalized_intrinsics(), image_size=(camera.res_w, camera.res_h),
                        trajectory=trajectory[start:stop:step]))
        return sequences

    rng = np.random.default_rng(config.seed)
    train = fetch(subjects_train, config.actions, config.subset, rng)
    test = fetch(subjects_test, config.actions)
    if config.actions and not test:
        raise UserError(f"no test sequence matches the action filter {list(config.actions)}")
    return train, test, spec


@register_dataset('synthetic')
def load_synthetic_h36m(config: DataConfig):
    """The embedded synthetic dataset: generated into <root_path>/synthetic on first use,
    then read by the very same Human3.6M reader."""
    from common.data.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic'), kind='h36m')
    train, test, spec = load_h36m(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': 'h36m'}))
    return train, test, spec


# ----------------------------------------------------------------------------- other inputs

def read_custom_keypoints(path):
    """The videos of a VideoPose3D custom 2D file (data_2d_custom_*.npz) as 2D-only Sequences
    (subject = video name, action 'custom'), their (left, right) 2D joints and layout name."""
    if not os.path.isfile(path):
        raise UserError(f"custom keypoint file '{path}' does not exist")
    positions, metadata = load_npz_entries(path, ['positions_2d', 'metadata']).values()
    symmetry, sequences = metadata.get('keypoints_symmetry'), []
    for video, entry in positions.items():
        size = metadata.get('video_metadata', {}).get(video)
        pixels = np.asarray(entry.get('custom', [[]])[0] if isinstance(entry, dict) else [], np.float32)
        if pixels.ndim != 3 or pixels.shape[2] < 2 or not size or symmetry is None or len(symmetry) != 2:
            raise UserError(f"'{path}': expected positions_2d[{video!r}] = {{'custom': [(N, J, 2)]}}, "
                            f"metadata video_metadata[{video!r}] = {{'w', 'h'}} and keypoints_symmetry")
        width, height = int(size['w']), int(size['h'])
        sequences.append(Sequence(normalize_screen_coordinates(pixels[..., :2], width, height), None, str(video),
                                  'custom', 0, 'custom', image_size=(width, height)))
    sides = tuple(tuple(int(j) for j in side) for side in symmetry or ((), ()))
    return sequences, sides, metadata.get('layout_name', '')


def read_predictions(path, num_joints):
    """[T, J, 3] camera-frame poses saved by --viz-export (.npy) or in an .npz."""
    if not os.path.isfile(path):
        raise UserError(f"predictions file '{path}' does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):  # the first array of an .npz
            loaded = loaded[loaded.files[0]]
    except (ValueError, OSError, IndexError) as err:
        raise UserError(f"'{path}' is not a readable .npy/.npz array: {str(err).splitlines()[0]}") from None
    if loaded.ndim != 3 or loaded.shape[1:] != (num_joints, 3):
        raise UserError(f"'{path}' holds shape {loaded.shape}, expected (T, {num_joints}, 3)")
    return loaded.astype(np.float32)
