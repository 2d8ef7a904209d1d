"""MPI-INF-3DHP: readers for the two public file layouts and the official test-set protocol.

Readers: ``3dhp`` / ``mpii3d_univ`` (P-STMO's data_train_3dhp.npz + data_test_3dhp.npz, 17 joints,
root 14, mm in the files), ``mpii3d`` (PoseRetNet's data_3d_mpii3d.npz + data_2d_mpii3d_gt.npz,
14 pelvis-relative joints in metres, the 2D third channel is the valid flag), and the synthetic
stand-ins ``synthetic_3dhp`` / ``synthetic_mpii3d`` written in those formats.
Evaluator ``mpi_inf_3dhp``: valid frames only, PCK@150 mm and AUC over the 14 protocol joints,
MPJPE over all joints, per sequence, per activity and "All" (frame-weighted), lives in
common/eval/mpi_inf_3dhp_protocol.py with the export for the official MATLAB scripts.
"""
import os
import re
import zipfile

import numpy as np

from common.data.records import (DataConfig, DatasetSpec, Sequence, check_finite_2d, find_data_file,
                                 load_npz_entries, register_dataset)
from common.errors import UserError
from common.data.pose_codec import normalize_screen_coordinates, split_trajectory
from common.data.skeleton import MPI_INF_3DHP_14, MPI_INF_3DHP_17, MPII3D_14_FROM_17

PSTMO_ORIGIN = "download P-STMO's processed MPI-INF-3DHP files (Google Drive link in P-STMO's README)"
RETNET_ORIGIN = ("make it with PoseRetNet's common/dataset/preprocess_mpii3d.py from VIBE's "
                 "MPI-INF-3DHP database files")
ACTIVITY_FILE = 'data_test_3dhp_activity.npz'
TEST_SEQUENCES = tuple(f'TS{i}' for i in range(1, 7))
ROOT_17 = 14

SPEC_17 = DatasetSpec(name='mpii3d_univ', skeleton=MPI_INF_3DHP_17, root_joint=ROOT_17,
                      kps_left=MPI_INF_3DHP_17.joints_left, kps_right=MPI_INF_3DHP_17.joints_right,
                      evaluator='mpi_inf_3dhp',
                      # P-STMO's and APTPose's loaders keep these files in mm: their losses, printed
                      # numbers and published checkpoints are in mm (PoseRetNet divides by 1000)
                      release_units={'stmo': 'mm', 'aptpose': 'mm'})


def image_size(sequence_name):
    """(width, height) of the camera behind a test sequence or training subject (pixels)."""
    return (1920, 1080) if sequence_name in ('TS5', 'TS6') else (2048, 2048)


def _natural_key(text):
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', str(text))]


def _array(value, path, where, joints, channels):
    """value as a float array [N, joints, C] with C in ``channels``, else a one-line error."""
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[2] not in channels:
        raise UserError(f"'{path}': {where} has shape {array.shape}, expected (N, {joints}, {channels[0]})")
    if array.shape[1] != joints:
        other = ("; PoseRetNet's 14-joint files are read with -d mpii3d" if joints == 17 else
                 "; P-STMO's 17-joint files are read with -d 3dhp")
        raise UserError(f"'{path}': {where} has {array.shape[1]} joints, expected {joints}{other}")
    return array.astype(np.float64)


def _checked_stream(path, where, data_2d, data_3d, joints, size, path3d=None):
    """(normalised 2D [N, J, 2] float32, 2D as stored [N, J, C], 3D as stored [N, J, 3]) of one
    stream, with joint counts, lengths and finite 2D checked; ``size`` = (width, height)."""
    stored2d = _array(data_2d, path, f'{where} 2D', joints, (2, 3))
    pose3d = _array(data_3d, path3d or path, f'{where} 3D', joints, (3,))
    if len(stored2d) != len(pose3d):
        raise UserError(f"'{path}': {where} has {len(stored2d)} 2D but {len(pose3d)} 3D frames")
    check_finite_2d(stored2d[..., :2], path, where)
    return normalize_screen_coordinates(stored2d[..., :2], *size).astype(np.float32), stored2d, pose3d


def _dict(value, path, where):
    if not isinstance(value, dict):
        raise UserError(f"'{path}': expected {where} to be a dict, found {type(value).__name__}")
    return value


def _pick(names, wanted, path, kind):
    """The requested names (all of ``names`` when ``wanted`` is None), checked to exist."""
    if wanted is None:
        return sorted(names, key=_natural_key)
    missing = [n for n in wanted if n not in names]
    if missing:
        known = ', '.join(sorted(names, key=_natural_key))
        raise UserError(f"{kind} {', '.join(missing)} not in '{path}' (has {known})")
    return list(wanted)


def _clip(arrays, subset, step, rng):
    """A contiguous clip (fraction ``subset``) of equal-length arrays, then every ``step``-th frame."""
    start, stop = 0, len(arrays[0])
    if subset < 1:
        n_frames = max(1, int(round(stop * subset)))
        start = int(rng.integers(0, stop - n_frames + 1))
        stop = start + n_frames
    return [a[start:stop:step] for a in arrays]


def _relative_to_root(pose3d_mm):
    """[N, 17, 3] mm -> (metres relative to the pelvis [N, 17, 3], pelvis trajectory [N, 3])."""
    relative, trajectory = split_trajectory(pose3d_mm / 1000.0, ROOT_17)
    return relative.astype(np.float32), trajectory.astype(np.float32)


# ----------------------------------------------------------------------------- P-STMO files (17 joints)

def read_activity_labels(path):
    """{'TS1': [n] int labels 1..7, ...} from the side file (top-level arrays or one pickled dict)."""
    try:
        with np.load(path, allow_pickle=True) as archive:
            entries = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise UserError(f"'{path}' is not a readable .npz archive: {err}") from None
    if len(entries) == 1 and next(iter(entries.values())).dtype == object:
        entries = _dict(next(iter(entries.values())).item(), path, 'the activity entry')
    return {name: np.asarray(labels).reshape(-1).astype(np.int64) for name, labels in entries.items()}


def _labels_for(labels, name, n_frames, valid):
    """Per-frame labels [n] of one test sequence; the file may hold all frames or the valid ones only."""
    if labels is None or name not in labels:
        return None
    values = labels[name]
    if len(values) == n_frames:
        return values
    if len(values) == int(valid.sum()):
        full = np.zeros(n_frames, np.int64)
        full[valid] = values
        return full
    raise UserError(f"'{ACTIVITY_FILE}': {name} has {len(values)} labels for {n_frames} frames "
                    f"({int(valid.sum())} valid)")


@register_dataset('3dhp', 'mpii3d_univ')
def load_3dhp(config: DataConfig):
    """P-STMO's normalised MPI-INF-3DHP files: training streams keyed (subject, sequence,
    camera), one test stream per sequence TS1..TS6 with its valid flags."""
    train_path = None if config.test_only else find_data_file(config.root_path, 'data_train_3dhp.npz', PSTMO_ORIGIN)
    test_path = find_data_file(config.root_path, 'data_test_3dhp.npz', PSTMO_ORIGIN)
    train_data = {} if config.test_only else _dict(load_npz_entries(train_path, ['data'])['data'], train_path,
                                                    "'data'")
    test_data = _dict(load_npz_entries(test_path, ['data'])['data'], test_path, "'data'")
    rng = np.random.default_rng(config.seed)

    by_subject = {}
    for key in train_data:
        parts = str(key).split(' ')
        if len(parts) != 2:
            raise UserError(f"'{train_path}': key {key!r} is not of the form 'S<s> Seq<q>'")
        by_subject.setdefault(parts[0], []).append((parts[1], key))
    wanted = None if config.subjects_train in (None, ['TS0'], ('TS0',)) else config.subjects_train
    train = []
    for subject in _pick(by_subject, wanted, train_path, 'training subject'):
        for seq_name, key in sorted(by_subject[subject], key=lambda item: _natural_key(item[0])):
            if config.actions and not any(seq_name.startswith(a) for a in config.actions):
                continue
            entry = train_data[key]
            if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], dict):
                raise UserError(f"'{train_path}': {key!r} should be [cameras dict, fps]")
            for camera in sorted(entry[0], key=_natural_key):
                stream, where = entry[0][camera], f'{key} camera {camera}'
                if not isinstance(stream, dict) or not {'data_2d', 'data_3d'} <= set(stream):
                    raise UserError(f"'{train_path}': {where} should hold 'data_2d' and 'data_3d'")
                pose2d, _, pose3d = _checked_stream(train_path, where, stream['data_2d'], stream['data_3d'],
                                                    17, image_size(subject))
                pose2d, pose3d, trajectory = _clip([pose2d, *_relative_to_root(pose3d)], config.subset,
                                                   config.downsample, rng)
                train.append(Sequence(pose2d=pose2d, pose3d=pose3d, subject=subject, action=seq_name,
                                      camera=int(camera) if str(camera).isdigit() else 0, group=subject,
                                      image_size=image_size(subject), trajectory=trajectory))
    if config.actions and not train and not config.test_only:
        raise UserError(f"no training sequence matches the filter {list(config.actions)} (names: Seq1, Seq2)")

    activity_path = os.path.join(os.path.dirname(test_path), ACTIVITY_FILE)
    labels = read_activity_labels(activity_path) if os.path.isfile(activity_path) else None
    test = []
    for name in _pick(test_data, config.subjects_test, test_path, 'test sequence'):
        entry = test_data[name]
        if not isinstance(entry, dict) or not {'data_2d', 'data_3d', 'valid'} <= set(entry):
            raise UserError(f"'{test_path}': {name} should hold 'data_2d', 'data_3d' and 'valid'")
        pose2d, _, pose3d = _checked_stream(test_path, name, entry['data_2d'], entry['data_3d'], 17,
                                            image_size(name))
        valid = np.asarray(entry['valid']).reshape(-1) > 0.5
        if len(valid) != len(pose2d):
            raise UserError(f"'{test_path}': {name} has {len(pose2d)} frames but {len(valid)} valid flags")
        relative, trajectory = _relative_to_root(pose3d)
        test.append(Sequence(
            pose2d=pose2d, pose3d=relative, subject=name, action=name, camera=0, group=name, valid=valid,
            image_size=image_size(name), labels=_labels_for(labels, name, len(valid), valid), trajectory=trajectory))
    if labels is None:
        print(f'INFO: no {ACTIVITY_FILE} next to the test file (the public files carry no activity '
              'labels): per-activity tables are omitted')
    return train, test, SPEC_17


# ----------------------------------------------------------------------------- PoseRetNet files (14 joints)

@register_dataset('mpii3d')
def load_mpii3d(config: DataConfig):
    """PoseRetNet's original-annotation MPI-INF-3DHP files: 'TS0' training, 'TS1'..'TS6' test,
    one stream per video segment; 3D pelvis-relative metres without a root joint."""
    path3d = find_data_file(config.root_path, 'data_3d_mpii3d.npz', RETNET_ORIGIN)
    path2d = find_data_file(config.root_path, 'data_2d_mpii3d_gt.npz', RETNET_ORIGIN)
    poses3d = _dict(load_npz_entries(path3d, ['positions_3d'])['positions_3d'], path3d, "'positions_3d'")
    poses2d = _dict(load_npz_entries(path2d, ['positions_2d'])['positions_2d'], path2d, "'positions_2d'")
    # the metadata's keypoints_symmetry repeats the skeleton's lists (PoseRetNet ignores it too)
    spec = DatasetSpec(name='mpii3d', skeleton=MPI_INF_3DHP_14, root_joint=None,
                       kps_left=MPI_INF_3DHP_14.joints_left, kps_right=MPI_INF_3DHP_14.joints_right,
                       evaluator='mpi_inf_3dhp', joint_index_3dhp=MPII3D_14_FROM_17)
    rng = np.random.default_rng(config.seed)

    def fetch(subjects, training):
        sequences = []
        for subject in subjects:
            if subject not in poses3d or subject not in poses2d:
                raise UserError(f"'{path3d if subject not in poses3d else path2d}' has no '{subject}' "
                                f"(has {', '.join(sorted(poses3d, key=_natural_key))})")
            videos = _dict(poses2d[subject], path2d, f'positions_2d[{subject!r}]')
            for video in sorted(videos, key=_natural_key):
                if video not in poses3d[subject]:
                    continue  # 2D without 3D cannot be trained on or scored
                streams, where = videos[video], f'{subject}/{video}'
                if not isinstance(streams, (list, tuple)) or len(streams) != 1:
                    raise UserError(f"'{path2d}': {where} should be a one-element list [(N, 14, 3)]")
                pose2d, flagged, pose3d = _checked_stream(path2d, where, streams[0], poses3d[subject][video],
                                                          14, image_size(subject), path3d)
                pose3d = pose3d.astype(np.float32)
                valid = flagged[..., 2].mean(1) > 0.5 if flagged.shape[2] == 3 else np.ones(len(pose3d), bool)
                if training:
                    pose2d, pose3d = _clip([pose2d, pose3d], config.subset, config.downsample, rng)
                sequences.append(Sequence(pose2d=pose2d, pose3d=pose3d, subject=subject, action=video,
                                          camera=0, group=subject, valid=None if training else valid,
                                          image_size=image_size(subject)))
        return sequences

    train = [] if config.test_only else fetch(config.subjects_train or ['TS0'], True)
    test = fetch(config.subjects_test or [s for s in TEST_SEQUENCES if s in poses2d], False)
    print('INFO: per-activity tables are omitted for -d mpii3d (its files carry no activity labels)')
    return train, test, spec


@register_dataset('synthetic_3dhp')
def load_synthetic_3dhp(config: DataConfig):
    """The embedded synthetic stand-in in P-STMO's format, generated on first use."""
    from common.data.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic_3dhp'), kind='3dhp')
    return load_3dhp(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': '3dhp'}))


@register_dataset('synthetic_mpii3d')
def load_synthetic_mpii3d(config: DataConfig):
    """The embedded synthetic stand-in in PoseRetNet's 14-joint format."""
    from common.data.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic_3dhp'), kind='3dhp')
    return load_mpii3d(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': 'mpii3d'}))
