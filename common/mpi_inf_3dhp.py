"""MPI-INF-3DHP: readers for the two public file layouts and the official test-set protocol.

Readers: ``3dhp`` / ``mpii3d_univ`` (P-STMO's data_train_3dhp.npz + data_test_3dhp.npz, 17 joints,
root 14, mm in the files), ``mpii3d`` (PoseRetNet's data_3d_mpii3d.npz + data_2d_mpii3d_gt.npz,
14 pelvis-relative joints in metres, the 2D third channel is the valid flag), and the synthetic
stand-ins ``synthetic_3dhp`` / ``synthetic_mpii3d`` written in those formats.
Evaluator ``mpi_inf_3dhp``: valid frames only, PCK@150 mm and AUC over the 14 protocol joints,
MPJPE over all joints, per sequence, per activity and "All" (frame-weighted); the exporter writes
the official sheet (CSV) and ``inference_data.mat`` for the official MATLAB scripts.
"""
import csv
import os
import re
import zipfile

import numpy as np
import torch

from common.camera import normalize_screen_coordinates
from common.datasets import (DataConfig, DatasetSpec, Sequence, check_finite_2d, find_data_file,
                             load_npz_entries, register_dataset)
from common.errors import UserError
from common.evaluation import register_evaluator
from common.metrics import (ACTIVITY_NAMES_3DHP, PCK_GROUPS_3DHP_17, MPII3D_14_FROM_17, groups_through,
                            joint_errors, mpii3d_protocol, zero_root)
from common.skeleton import MPI_INF_3DHP_14, MPI_INF_3DHP_17

PSTMO_ORIGIN = "download P-STMO's processed MPI-INF-3DHP files (Google Drive link in P-STMO's README)"
RETNET_ORIGIN = ("make it with PoseRetNet's common/dataset/preprocess_mpii3d.py from VIBE's "
                 "MPI-INF-3DHP database files")
ACTIVITY_FILE = 'data_test_3dhp_activity.npz'
TEST_SEQUENCES = tuple(f'TS{i}' for i in range(1, 7))
ROOT_17 = 14

SPEC_17 = DatasetSpec(name='mpii3d_univ', skeleton=MPI_INF_3DHP_17, root_joint=ROOT_17,
                      kps_left=MPI_INF_3DHP_17.joints_left, kps_right=MPI_INF_3DHP_17.joints_right,
                      evaluator='mpi_inf_3dhp')


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
    """[N, 17, 3] mm -> metres, joints relative to the pelvis, the pelvis keeping its position."""
    pose = pose3d_mm / 1000.0
    pose[:, np.arange(17) != ROOT_17] -= pose[:, ROOT_17:ROOT_17 + 1]
    return pose.astype(np.float32)


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
    train_path = find_data_file(config.root_path, 'data_train_3dhp.npz', PSTMO_ORIGIN)
    test_path = find_data_file(config.root_path, 'data_test_3dhp.npz', PSTMO_ORIGIN)
    train_data = _dict(load_npz_entries(train_path, ['data'])['data'], train_path, "'data'")
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
                pose2d, pose3d = _clip([pose2d, _relative_to_root(pose3d)], config.subset, config.downsample, rng)
                train.append(Sequence(pose2d=pose2d, pose3d=pose3d, subject=subject, action=seq_name,
                                      camera=int(camera) if str(camera).isdigit() else 0, group=subject,
                                      image_size=image_size(subject)))
    if config.actions and not train:
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
        test.append(Sequence(
            pose2d=pose2d, pose3d=_relative_to_root(pose3d), subject=name, action=name, camera=0, group=name,
            valid=valid, image_size=image_size(name), labels=_labels_for(labels, name, len(valid), valid)))
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

    train = fetch(config.subjects_train or ['TS0'], True)
    test = fetch(config.subjects_test or [s for s in TEST_SEQUENCES if s in poses2d], False)
    print('INFO: per-activity tables are omitted for -d mpii3d (its files carry no activity labels)')
    return train, test, spec


@register_dataset('synthetic_3dhp')
def load_synthetic_3dhp(config: DataConfig):
    """The embedded synthetic stand-in in P-STMO's format, generated on first use."""
    from common.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic_3dhp'), kind='3dhp')
    return load_3dhp(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': '3dhp'}))


@register_dataset('synthetic_mpii3d')
def load_synthetic_mpii3d(config: DataConfig):
    """The embedded synthetic stand-in in PoseRetNet's 14-joint format."""
    from common.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic_3dhp'), kind='3dhp')
    return load_mpii3d(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': 'mpii3d'}))


# ----------------------------------------------------------------------------- protocol

def protocol_groups(spec):
    """The 8 PCK/AUC joint groups in the dataset's joint order."""
    index = spec.joint_index_3dhp
    return PCK_GROUPS_3DHP_17 if index is None else groups_through(PCK_GROUPS_3DHP_17, index)


def valid_frames(seq):
    """[T] bool: the frames the protocol scores."""
    return np.ones(len(seq), bool) if seq.valid is None else seq.valid


def scored_errors(sequences, predictions, spec, zero_predicted_root):
    """Errors of the valid frames in mm [N, J] (ground-truth root zeroed), the sequence name of
    every frame, and the activity labels [N] (None unless every sequence has them)."""
    errors, names, labels = [], [], []
    for seq, pred in zip(sequences, predictions):
        valid = valid_frames(seq)
        target = torch.from_numpy(np.asarray(seq.pose3d[valid], np.float64))
        if spec.root_joint is not None:
            target[:, spec.root_joint] = 0
        pred = torch.from_numpy(np.asarray(pred[valid], np.float64))
        if zero_predicted_root:
            pred = zero_root(pred, spec.root_joint)
        errors.append(joint_errors(pred, target) * 1000.0)
        names += [seq.group] * int(valid.sum())
        labels.append(None if seq.labels is None else seq.labels[valid])
    errors = torch.cat(errors) if errors else torch.zeros(0, spec.num_joints, dtype=torch.float64)
    known = bool(labels) and all(item is not None for item in labels)
    return errors, names, (np.concatenate(labels) if known else None)


@torch.no_grad()
def evaluate_3dhp(sequences, predictions, spec, zero_predicted_root):
    """Official MPI-INF-3DHP protocol (data-formats 3.2). Top-level numbers are 'All', i.e.
    frame-weighted over the sequences: 'mpjpe' (mm), 'pck', 'auc' (percent)."""
    errors, names, labels = scored_errors(sequences, predictions, spec, zero_predicted_root)
    table = mpii3d_protocol(errors, names, labels, protocol_groups(spec))
    names = np.array(names)
    for name, row in table['per_sequence'].items():  # per-joint MPJPE: the sheet's columns
        row['per_joint'] = errors[torch.from_numpy(names == name)].mean(0).tolist()
    for label, row in ((k, table['per_activity'].get(v)) for k, v in ACTIVITY_NAMES_3DHP.items()):
        if row is not None:
            row['per_joint'] = errors[torch.from_numpy(labels == label)].mean(0).tolist()
    table['All']['per_joint'] = errors.mean(0).tolist()
    rows = table['per_sequence'].values()
    everything = table['All']
    return {'protocol': 'mpi_inf_3dhp', 'mpjpe': everything['mpjpe'], 'pck': everything['pck'],
            'auc': everything['auc'], 'frames': everything['frames'],
            'per_sequence': table['per_sequence'], 'per_activity': table['per_activity'], 'all': everything,
            'sequence_mean': {k: float(np.mean([r[k] for r in rows])) if rows else float('nan')
                              for k in ('mpjpe', 'pck', 'auc')},
            'joint_names': list(spec.skeleton.joint_names),
            'score': everything['mpjpe'], 'score_name': 'MPJPE'}


def _sequence_title(name):
    return name.replace('TS', 'TestSeq') if re.fullmatch(r'TS\d', name) else name


def format_3dhp(results) -> str:
    """The official sheet's numbers as text: a summary, then PCK and AUC per joint group."""
    rows = [(_sequence_title(n), r) for n, r in results['per_sequence'].items()]
    rows += list(results['per_activity'].items()) + [('All', results['all'])]
    groups = list(results['all']['pck_groups'])  # the sheet's order and abbreviations (SHEET_GROUPS)
    lines = [f"{'MPI-INF-3DHP':<20}{'frames':>7}{'MPJPE':>8}{'PCK':>7}{'AUC':>7}"]
    lines += [f"{name:<20}{row['frames']:>7}{row['mpjpe']:>8.1f}{row['pck']:>7.1f}{row['auc']:>7.1f}"
              for name, row in rows]
    for metric in ('pck', 'auc'):
        lines.append(f"{metric.upper():<20}" + ''.join(f'{g:>7}' for g in SHEET_GROUPS) + f"{'Total':>7}")
        lines += [f'{name:<20}' + ''.join(f"{row[metric + '_groups'][g]:>7.1f}" for g in groups)
                  + f'{row[metric]:>7.1f}' for name, row in rows]
    mean = results['sequence_mean']
    lines += [f"All (frame-weighted over sequences, as reported): MPJPE {results['mpjpe']:.1f} mm, "
              f"PCK {results['pck']:.1f}, AUC {results['auc']:.1f}",
              f"(plain mean over sequences: MPJPE {mean['mpjpe']:.1f}, PCK {mean['pck']:.1f}, "
              f"AUC {mean['auc']:.1f}; valid frames only; PCK@150 mm and AUC over 14 joints, "
              f"MPJPE over all {len(results['joint_names'])}; flip test "
              f"{'on' if results.get('flip_test') else 'off'})"]
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- export for the MATLAB scripts

SHEET_GROUPS = ('Head', 'Neck', 'Shou', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle')
SHEET_WIDTH = 22  # columns A..V of the official sheet


def _matlab_tables(row_names, rows, joint_columns):
    """The three blocks mpii_evaluate_errors.m writes: per-joint MPJPE and 'Average' (17 joint
    columns), then PCK and AUC per group and 'Total', one row per name."""
    block = [[''] + list(MPI_INF_3DHP_17.joint_names) + ['Average']]
    for name, row in zip(row_names, rows):
        cells = [''] * 17
        for joint, column in enumerate(joint_columns):
            cells[column] = row['per_joint'][joint]
        block.append([name] + cells + [row['mpjpe']])
    for metric in ('pck', 'auc'):
        block.append([metric.upper()] + list(SHEET_GROUPS) + ['Total'])
        block += [[name] + list(row[metric + '_groups'].values()) + [row[metric]]
                  for name, row in zip(row_names, rows)]
    return block


def _write_csv(path, header, block):
    def cell(value):
        if isinstance(value, float):
            return 'NaN' if value != value else f'{value:.15g}'
        return value
    with open(path, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[cell(v) for v in row] + [''] * (len(header) - len(row)) for row in block])


def sequencewise_sheet(results, joint_columns):
    """Rows of mpii_3dhp_evaluation_sequencewise: columns A-S as the official MATLAB script
    writes them, plus the frame weighting of the distributed sheet (Frame_num, Sum,
    Final result in T-V for MPJPE and in L-O for PCK and AUC)."""
    names = list(results['per_sequence'])
    rows = [results['per_sequence'][n] for n in names]
    block = [row + [''] * (SHEET_WIDTH - len(row))
             for row in _matlab_tables([_sequence_title(n) for n in names], rows, joint_columns)]
    frames, count = sum(r['frames'] for r in rows), len(rows)
    block[0][19:22] = ['Frame_num', 'Sum', 'Final result']
    for i, row in enumerate(rows):
        block[1 + i][19:21] = [row['frames'], row['frames'] * row['mpjpe']]
    total = sum(r['frames'] * r['mpjpe'] for r in rows)
    block[count + 1][11:15] = ['Total', 'Frame_num', 'Sum', 'Final result']
    block[count + 1][18:22] = [results['sequence_mean']['mpjpe'], frames, total, total / max(frames, 1)]
    summaries = [block[2 * count + 2], [''] * SHEET_WIDTH]
    for k, metric in enumerate(('pck', 'auc')):
        first = (k + 1) * (count + 1) + 1
        for i, row in enumerate(rows):
            block[first + i][11:14] = [row[metric], row['frames'], row['frames'] * row[metric]]
        total = sum(r['frames'] * r[metric] for r in rows)
        summaries[k][11:15] = [results['sequence_mean'][metric], frames, total, total / max(frames, 1)]
    return block + [summaries[1]]


def export_3dhp(results, sequences, predictions, spec, directory):
    """Write mpii_3dhp_evaluation_sequencewise.csv (and _activitywise.csv when activity labels
    are known) and inference_data.mat (TS1..TS6: [3, 17, 1, n_valid] float32 mm, pelvis 0)."""
    os.makedirs(directory, exist_ok=True)
    joint_columns = spec.joint_index_3dhp or tuple(range(spec.num_joints))
    path = os.path.join(directory, 'mpii_3dhp_evaluation_sequencewise.csv')
    header = [f'seq_table{i}' for i in range(1, 20)] + [''] * 3
    _write_csv(path, header, sequencewise_sheet(results, joint_columns))
    written = [path]
    if results['per_activity']:
        empty = {'per_joint': [float('nan')] * spec.num_joints, 'mpjpe': float('nan'), 'pck': float('nan'),
                 'auc': float('nan'), 'pck_groups': dict.fromkeys(SHEET_GROUPS, float('nan'))}
        empty['auc_groups'] = empty['pck_groups']
        names = list(ACTIVITY_NAMES_3DHP.values())
        rows = [results['per_activity'].get(n, empty) for n in names] + [results['all']]
        path = os.path.join(directory, 'mpii_3dhp_evaluation_activitywise.csv')
        _write_csv(path, [f'activity_table{i}' for i in range(1, 20)],
                   _matlab_tables(names + ['All'], rows, joint_columns))
        written.append(path)
    if spec.num_joints == 17 and spec.root_joint is not None:
        import scipy.io
        streams = {}
        for seq, pred in zip(sequences, predictions):
            valid = valid_frames(seq)
            pose = np.asarray(pred[valid], np.float64) * 1000.0
            pose[:, spec.root_joint] = 0  # as the official exporters: the pelvis set to 0, no re-centring
            streams.setdefault(seq.group, []).append(pose)
        arrays = {name: np.concatenate(parts).transpose(2, 1, 0)[:, :, None, :].astype(np.float32)
                  for name, parts in streams.items()}
        path = os.path.join(directory, 'inference_data.mat')
        scipy.io.savemat(path, arrays)
        written.append(path)
    else:
        print('INFO: inference_data.mat not written: the official MATLAB scripts need the 17-joint '
              'layout with every test frame (-d 3dhp)')
    print(f"INFO: MPI-INF-3DHP results written to {', '.join(written)}")


register_evaluator('mpi_inf_3dhp', format_3dhp, export_3dhp)(evaluate_3dhp)
