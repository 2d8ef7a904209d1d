"""MPI-INF-3DHP test-set protocol: evaluator ``mpi_inf_3dhp`` (valid frames only, PCK@150 mm and
AUC over the 14 protocol joints, MPJPE over all joints, per sequence, per activity and "All",
frame-weighted) and the exporter writing the official sheet (CSV) and ``inference_data.mat``
for the official MATLAB scripts.
"""
import csv
import os
import re

import numpy as np
import torch

from common.data.skeleton import MPI_INF_3DHP_17
from common.eval.metrics import (ACTIVITY_NAMES_3DHP, PCK_GROUPS_3DHP_17, groups_through, joint_errors,
                                 mpii3d_protocol)
from common.data.pose_codec import zero_root

# ----------------------------------------------------------------------------- protocol

def protocol_groups(spec):
    """The 8 PCK/AUC joint groups in the dataset's joint order."""
    index = spec.joint_index_3dhp
    return PCK_GROUPS_3DHP_17 if index is None else groups_through(PCK_GROUPS_3DHP_17, index)


def valid_frames(seq):
    """[T] bool: the frames the protocol scores."""
    return np.ones(len(seq), bool) if seq.valid is None else seq.valid


def scored_errors(sequences, predictions, spec, zero_predicted_root):
    """Errors of the valid frames in metres [N, J] (ground-truth root zeroed), the sequence name of
    every frame, and the activity labels [N] (None unless every sequence has them)."""
    errors, names, labels = [], [], []
    for seq, pred in zip(sequences, predictions):
        valid = valid_frames(seq)
        target = torch.from_numpy(np.asarray(seq.pose3d[valid], np.float64))
        pred = torch.from_numpy(np.asarray(pred[valid], np.float64))
        if zero_predicted_root:
            pred = zero_root(pred, spec.root_joint)
        errors.append(joint_errors(pred, target))
        names += [seq.group] * int(valid.sum())
        labels.append(None if seq.labels is None else seq.labels[valid])
    errors = torch.cat(errors) if errors else torch.zeros(0, spec.num_joints, dtype=torch.float64)
    known = bool(labels) and all(item is not None for item in labels)
    return errors, names, (np.concatenate(labels) if known else None)


def _row_in_mm(row, joint_errors_m):
    """A protocol row for the results (millimetres, as every results dict): its MPJPE and the
    per-joint MPJPE of its frames ``joint_errors_m`` [n, J] (metres), the sheet's columns."""
    row['mpjpe'] *= 1000.0
    row['per_joint'] = (joint_errors_m.mean(0) * 1000.0).tolist()


@torch.no_grad()
def evaluate_3dhp(sequences, predictions, spec, zero_predicted_root):
    """Official MPI-INF-3DHP protocol (data-formats 3.2), computed in metres and reported in mm.
    Top-level numbers are 'All', i.e. frame-weighted over the sequences: 'mpjpe' (mm), 'pck',
    'auc' (percent)."""
    errors, names, labels = scored_errors(sequences, predictions, spec, zero_predicted_root)
    table = mpii3d_protocol(errors, names, labels, protocol_groups(spec))
    names = np.array(names)
    for name, row in table['per_sequence'].items():
        _row_in_mm(row, errors[torch.from_numpy(names == name)])
    for label, row in ((k, table['per_activity'].get(v)) for k, v in ACTIVITY_NAMES_3DHP.items()):
        if row is not None:
            _row_in_mm(row, errors[torch.from_numpy(labels == label)])
    _row_in_mm(table['All'], errors)
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


def text_table(header, rows):
    """Lines of a table: the first column left-aligned, the others right-aligned, every column
    as wide as its widest cell and separated by two spaces, so numbers never run together."""
    cells = [header] + rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ['  '.join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in cells]


def format_3dhp(results) -> str:
    """The official sheet's numbers as text: a summary, then PCK and AUC per joint group."""
    rows = [(_sequence_title(n), r) for n, r in results['per_sequence'].items()]
    rows += list(results['per_activity'].items()) + [('All', results['all'])]
    groups = list(results['all']['pck_groups'])  # the sheet's order and abbreviations (SHEET_GROUPS)
    lines = text_table(['MPI-INF-3DHP', 'frames', 'MPJPE', 'PCK', 'AUC'],
                       [[name, str(row['frames'])] + [f'{row[k]:.1f}' for k in ('mpjpe', 'pck', 'auc')]
                        for name, row in rows])
    for metric in ('pck', 'auc'):
        lines += text_table([metric.upper()] + list(SHEET_GROUPS) + ['Total'],
                            [[name] + [f"{row[metric + '_groups'][g]:.1f}" for g in groups] + [f'{row[metric]:.1f}']
                             for name, row in rows])
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

