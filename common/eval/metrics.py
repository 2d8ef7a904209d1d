"""Pose metrics as papers name them, and the averaging that results tables use.

Human3.6M (poses in metres, [..., J, 3]; results in metres, printing converts to mm):

* ``mpjpe``   -- Protocol #1: mean Euclidean joint error.
* ``p_mpjpe`` -- Protocol #2: error after per-frame similarity alignment (rotation,
  scale, translation; no reflection), as VideoPose3D computes it.
* ``n_mpjpe`` -- error after per-frame scale alignment only.
* ``mpjve``   -- error of the first temporal differences within a stream.

Every one takes ``reduce``: ``'mean'`` (a scalar), ``'frame'`` (the joint mean per
frame) or ``'none'`` (per frame and joint). ``ActionwiseMeter`` turns per-stream
results into the action-wise average the tables report.

MPI-INF-3DHP (errors and thresholds in metres, like everything above): ``pck``, ``auc``,
``protocol_table`` and ``mpii3d_protocol`` follow the official test-set protocol (PCK@150 mm
and AUC over the 14 joints of 8 groups, strict ``<``; MPJPE over all joints given).
"""
from typing import Dict, Mapping, Optional, Sequence

import torch

from common.data.skeleton import MPII3D_14_FROM_17  # noqa: F401  (part of the protocol tables)

__all__ = ['joint_errors', 'mpjpe', 'p_mpjpe', 'n_mpjpe', 'mpjve', 'per_joint_error',
           'procrustes_align', 'stream_metrics', 'action_group', 'ActionwiseMeter',
           'PCK_GROUPS_3DHP_17', 'PCK_GROUPS_3DHP_14', 'MPII3D_14_FROM_17', 'ACTIVITY_NAMES_3DHP',
           'PCK_THRESHOLD', 'AUC_THRESHOLDS', 'groups_through', 'pck', 'auc', 'protocol_table', 'mpii3d_protocol']

METRIC_NAMES = ('mpjpe', 'p_mpjpe', 'n_mpjpe', 'mpjve')


def _check_shapes(pred, target):
    assert pred.shape == target.shape, f'prediction {tuple(pred.shape)} vs target {tuple(target.shape)}'
    assert pred.dim() >= 2, 'poses must be [..., J, C]'


def _reduce(errors, reduce):
    """errors [..., J] -> scalar ('mean'), [...] ('frame') or unchanged ('none')."""
    if reduce == 'mean':
        return errors.mean()
    if reduce == 'frame':
        return errors.mean(-1)
    if reduce == 'none':
        return errors
    raise ValueError(f"reduce must be 'mean', 'frame' or 'none', not {reduce!r}")


def joint_errors(pred, target):
    """Euclidean distance per joint: [..., J, C] x2 -> [..., J]."""
    _check_shapes(pred, target)
    return torch.linalg.vector_norm(pred - target, dim=-1)


def mpjpe(pred, target, reduce: str = 'mean'):
    """Mean per-joint position error (Protocol #1). pred, target [..., J, 3]."""
    return _reduce(joint_errors(pred, target), reduce)


def per_joint_error(pred, target):
    """Mean error of every joint over all frames: [..., J, 3] -> [J]."""
    errors = joint_errors(pred, target)
    return errors.reshape(-1, errors.shape[-1]).mean(0)


def procrustes_align(pred, target):
    """Align every frame of ``pred`` to ``target`` by the similarity transform that
    minimises the squared error, reflections excluded (VideoPose3D's procedure).

    pred, target -- [..., J, 3]; returns the aligned prediction [..., J, 3].
    Computed in float64 (batched 3 x 3 SVDs), returned in the input dtype."""
    _check_shapes(pred, target)
    dtype = pred.dtype
    pred, target = pred.double(), target.double()
    mean_target = target.mean(-2, keepdim=True)
    mean_pred = pred.mean(-2, keepdim=True)
    target0, pred0 = target - mean_target, pred - mean_pred
    # A prediction with all joints at one point has no direction; clamping its norm
    # makes the alignment collapse it onto the target's centroid instead of NaN.
    norm_target = torch.linalg.matrix_norm(target0).clamp_min(1e-12)[..., None, None]
    norm_pred = torch.linalg.matrix_norm(pred0).clamp_min(1e-12)[..., None, None]
    target0, pred0 = target0 / norm_target, pred0 / norm_pred

    h = target0.transpose(-1, -2) @ pred0                       # [..., 3, 3]
    u, s, vh = torch.linalg.svd(h)
    v = vh.transpose(-1, -2)
    rotation = v @ u.transpose(-1, -2)
    # det(R) < 0 means a reflection: flip the weakest axis instead (last column of V).
    sign = torch.where(torch.linalg.det(rotation) < 0, -1.0, 1.0).to(s)
    v = torch.cat([v[..., :-1], v[..., -1:] * sign[..., None, None]], -1)
    s = torch.cat([s[..., :-1], s[..., -1:] * sign[..., None]], -1)
    rotation = v @ u.transpose(-1, -2)

    scale = s.sum(-1)[..., None, None] * norm_target / norm_pred
    translation = mean_target - scale * (mean_pred @ rotation)
    return (scale * (pred @ rotation) + translation).to(dtype)


def p_mpjpe(pred, target, reduce: str = 'mean'):
    """MPJPE after per-frame Procrustes alignment with scale (Protocol #2). [..., J, 3]."""
    return _reduce(joint_errors(procrustes_align(pred, target), target), reduce)


def n_mpjpe(pred, target, reduce: str = 'mean'):
    """MPJPE after per-frame scaling of the prediction, s = sum<P, G> / sum |P|^2. [..., J, 3]."""
    _check_shapes(pred, target)
    scale = (pred * target).sum((-1, -2), keepdim=True) / (pred * pred).sum((-1, -2), keepdim=True)
    return _reduce(joint_errors(scale * pred, target), reduce)


def mpjve(pred, target, reduce: str = 'mean'):
    """Mean per-joint velocity error: first differences along time within each stream.

    pred, target -- [..., T, J, 3]; 'frame' gives [..., T - 1], 'none' [..., T - 1, J]."""
    _check_shapes(pred, target)
    assert pred.dim() >= 3, 'velocity needs [..., T, J, 3]'
    return _reduce(joint_errors(pred.diff(dim=-3), target.diff(dim=-3)), reduce)


def stream_metrics(pred, target) -> Dict[str, float]:
    """The four metrics of one camera stream, pred and target [T, J, 3] (metres).

    P-MPJPE and N-MPJPE are frame means; a one-frame stream has no velocity (MPJVE 0)."""
    _check_shapes(pred, target)
    assert pred.dim() == 3, 'one stream is [T, J, 3]'
    with torch.no_grad():
        return {'mpjpe': mpjpe(pred, target).item(),
                'p_mpjpe': p_mpjpe(pred, target).item(),
                'n_mpjpe': n_mpjpe(pred, target).item(),
                'mpjve': mpjve(pred, target).item() if pred.shape[0] > 1 else 0.0}


def action_group(name: str) -> str:
    """Human3.6M action group: the text before the first space ('Walking 1' -> 'Walking')."""
    return name.split(' ')[0]


class ActionwiseMeter:
    """Accumulates per-stream metrics and reports the table numbers.

    Within a group every stream weighs its frame count T (velocity too, not T - 1);
    the headline numbers are the plain mean over groups ("action-wise average");
    ``frame_weighted`` pools all frames instead. Meters from several processes merge
    by adding their sums (``merge``), so a DDP evaluation can gather and combine them.

    group_of -- maps a stream's name to its group (``action_group``; None: the name)."""

    def __init__(self, group_of=action_group):
        self.group_of = group_of
        self.sums: Dict[str, Dict[str, float]] = {}

    def update(self, name: str, frames: int, mpjpe: float, p_mpjpe: float, n_mpjpe: float,
               mpjve: float):
        """Add one stream: its name, frame count and the four stream metrics (metres)."""
        group = self.group_of(name) if self.group_of is not None else name
        entry = self.sums.setdefault(group, dict.fromkeys(METRIC_NAMES + ('frames',), 0.0))
        frames = int(frames)
        for key, value in zip(METRIC_NAMES, (mpjpe, p_mpjpe, n_mpjpe, mpjve)):
            entry[key] += float(value) * frames
        entry['frames'] += frames

    def update_stream(self, name: str, pred, target):
        """Score one stream, pred and target [T, J, 3], and add it."""
        self.update(name, pred.shape[0], **stream_metrics(pred, target))

    def merge(self, other: 'ActionwiseMeter') -> 'ActionwiseMeter':
        """Add another meter's sums into this one (e.g. gathered from other ranks)."""
        for group, entry in other.sums.items():
            mine = self.sums.setdefault(group, dict.fromkeys(METRIC_NAMES + ('frames',), 0.0))
            for key, value in entry.items():
                mine[key] += value
        return self

    def __len__(self):
        return len(self.sums)

    def result(self) -> dict:
        """{'mpjpe', 'p_mpjpe', 'n_mpjpe', 'mpjve': action-wise averages,
        'per_action': {group: {four metrics, 'frames'}}, 'frame_weighted': {four, 'frames'}}."""
        per_action = {}
        for group in sorted(self.sums):
            entry = self.sums[group]
            per_action[group] = {k: entry[k] / entry['frames'] for k in METRIC_NAMES}
            per_action[group]['frames'] = int(entry['frames'])
        total = sum(e['frames'] for e in self.sums.values())
        nan = float('nan')
        result = {k: (sum(v[k] for v in per_action.values()) / len(per_action)) if per_action else nan
                  for k in METRIC_NAMES}
        result['per_action'] = per_action
        result['frame_weighted'] = {k: (sum(e[k] for e in self.sums.values()) / total) if total else nan
                                    for k in METRIC_NAMES}
        result['frame_weighted']['frames'] = int(total)
        return result


# ---------------------------------------------------------------------------
# MPI-INF-3DHP test-set protocol (errors in metres; the protocol's thresholds are 0-150 mm).

#: PCK / AUC joint groups in the 17-joint 3DHP order (pelvis, spine and head excluded).
PCK_GROUPS_3DHP_17 = {'Head': (0,), 'Neck': (1,), 'Shoulder': (2, 5), 'Elbow': (3, 6),
                      'Wrist': (4, 7), 'Hip': (8, 11), 'Knee': (9, 12), 'Ankle': (10, 13)}
ACTIVITY_NAMES_3DHP = {1: 'Standing/Walking', 2: 'Exercising', 3: 'Sitting',
                       4: 'Reaching/Crouching', 5: 'On The Floor', 6: 'Sports', 7: 'Miscellaneous'}
PCK_THRESHOLD = 150 / 1000
#: 0, 5, ..., 150 mm in metres, each written as mm / 1000 so that an error read in mm and one
#: read in metres meet the same strict threshold.
AUC_THRESHOLDS = tuple(mm / 1000 for mm in range(0, 151, 5))


def groups_through(groups: Mapping[str, Sequence[int]], index_map: Sequence[int]):
    """Re-index joint groups for a layout whose joint k is joint index_map[k] of the groups' order."""
    position = {old: new for new, old in enumerate(index_map)}
    return {name: tuple(position[j] for j in joints) for name, joints in groups.items()}


PCK_GROUPS_3DHP_14 = groups_through(PCK_GROUPS_3DHP_17, MPII3D_14_FROM_17)


def _group_joints(groups):
    return [j for joints in groups.values() for j in joints]


def _pck_curve(errors, thresholds, joints):
    """Fraction of the selected joints under each threshold: [..., J] -> [len(thresholds)]."""
    errors = torch.as_tensor(errors)
    selected = errors[..., list(joints)].reshape(-1)
    limits = torch.as_tensor(thresholds, dtype=selected.dtype, device=selected.device)
    return (selected[:, None] < limits).double().mean(0)


def pck(errors, threshold: float = PCK_THRESHOLD, groups=PCK_GROUPS_3DHP_17):
    """Percentage of joints with error (metres) strictly below ``threshold`` (150 mm), over
    the joints of ``groups`` (default: the 14 of the 3DHP 17-joint order). errors [..., J]."""
    return 100.0 * _pck_curve(errors, [threshold], _group_joints(groups))[0].item()


def auc(errors, thresholds=AUC_THRESHOLDS, groups=PCK_GROUPS_3DHP_17):
    """Mean PCK over the thresholds 0, 5, ..., 150 mm, in percent (perfect: 30 / 31 = 96.77).
    errors [..., J] in metres."""
    return 100.0 * _pck_curve(errors, thresholds, _group_joints(groups)).mean().item()


def protocol_table(errors, groups=PCK_GROUPS_3DHP_17, thresholds=AUC_THRESHOLDS) -> dict:
    """One row of the 3DHP tables from per-frame per-joint errors [N, J] (metres):
    {'pck', 'auc' (Total over the group joints; percent), 'mpjpe' (over all J joints; metres),
    'pck_groups', 'auc_groups', 'frames'}."""
    errors = torch.as_tensor(errors)
    assert errors.dim() == 2, 'errors must be [N, J]'
    curves = {name: _pck_curve(errors, thresholds, joints) for name, joints in groups.items()}
    # PCK is read at the 150 mm threshold (the curve's last point when the list lacks it).
    pck_index = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - PCK_THRESHOLD))
    total = _pck_curve(errors, thresholds, _group_joints(groups))
    return {'pck': 100.0 * total[pck_index].item(), 'auc': 100.0 * total.mean().item(),
            'mpjpe': errors.double().mean().item() if errors.numel() else float('nan'),
            'pck_groups': {n: 100.0 * c[pck_index].item() for n, c in curves.items()},
            'auc_groups': {n: 100.0 * c.mean().item() for n, c in curves.items()},
            'frames': int(errors.shape[0])}


def mpii3d_protocol(errors, sequences: Sequence[str], activities: Optional[Sequence[int]] = None,
                    groups=PCK_GROUPS_3DHP_17, activity_names=ACTIVITY_NAMES_3DHP) -> dict:
    """The official 3DHP tables from the errors of the valid test frames.

    errors -- [N, J] per-frame per-joint errors (metres), valid frames of all sequences
    sequences -- N sequence names ('TS1'...), one per frame
    activities -- N activity labels 1..7, or None
    Returns {'per_sequence': {name: row}, 'per_activity': {name: row}, 'All': row}
    (rows as ``protocol_table``). The numbers papers report are 'All', i.e. the
    frame-weighted average over sequences, not the plain mean over them."""
    errors = torch.as_tensor(errors)
    assert errors.dim() == 2 and len(sequences) == errors.shape[0], 'one sequence name per frame'
    names = list(sequences)
    result = {'per_sequence': {}, 'per_activity': {}}
    for name in sorted(set(names)):
        mask = torch.tensor([n == name for n in names], device=errors.device)
        result['per_sequence'][name] = protocol_table(errors[mask], groups)
    if activities is not None:
        labels = torch.as_tensor(activities).reshape(-1).to(errors.device)
        assert labels.shape[0] == errors.shape[0], 'one activity label per frame'
        for label in sorted(set(labels.tolist())):
            name = activity_names.get(int(label), str(int(label)))
            result['per_activity'][name] = protocol_table(errors[labels == label], groups)
    result['All'] = protocol_table(errors, groups)
    return result
