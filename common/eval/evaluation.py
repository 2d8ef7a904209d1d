"""Evaluation: predict every test stream, score it with the dataset's protocol, print tables.

Protocols are registered by name (``DatasetSpec.evaluator``); each returns a results
dict in millimetres with ``score`` / ``score_name`` (the number model selection uses).
"""
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.data.pose_codec import unit_scale, zero_root
from common.dist import DistInfo, gather_objects
from common.errors import UserError
from common.eval.inference import predict_sequence
from common.eval.metrics import METRIC_NAMES, ActionwiseMeter
from common.eval.mpi_inf_3dhp_protocol import evaluate_3dhp, export_3dhp, format_3dhp


@dataclass
class EvalConfig:
    """flip -- test-time flip averaging; zero_root -- zero the predicted root before scoring
    (None: the model's own convention, ``model.eval_zero_root``); max_batch -- windows per
    forward pass; refine -- a refine module applied to every predicted frame (P-STMO / Strided
    protocol: it uses the ground-truth root depth and the camera intrinsics), or None."""
    flip: bool = True
    zero_root: Optional[bool] = None
    max_batch: int = 1024
    refine: Optional[torch.nn.Module] = None


EVALUATORS: Dict[str, Callable] = {}
FORMATTERS: Dict[str, Callable] = {}
EXPORTERS: Dict[str, Callable] = {}


def register_evaluator(name, formatter, exporter=None):
    """Register a protocol: fn(sequences, predictions, spec, zero_predicted_root) -> results
    (mm); formatter(results) -> printed table; exporter(results, sequences, predictions, spec,
    directory) writes protocol-specific files (CSV, .mat) next to the results."""
    def decorate(fn):
        EVALUATORS[name] = fn
        FORMATTERS[name] = formatter
        if exporter is not None:
            EXPORTERS[name] = exporter
        return fn
    return decorate


def export_results(results, sequences, predictions, spec, directory):
    """Write the protocol's extra files (if it has any) into ``directory``."""
    exporter = EXPORTERS.get(results.get('protocol'))
    if exporter is not None and predictions is not None:
        exporter(results, sequences, predictions, spec, directory)


def length_groups(sequences, limit=8):
    """Indices of sequences with equal lengths (the camera views of one recording), at most
    ``limit`` per group: each group is predicted as one batch."""
    by_length = {}
    for index, seq in enumerate(sequences):
        by_length.setdefault(len(seq), []).append(index)
    return [group[i:i + limit] for group in by_length.values() for i in range(0, len(group), limit)]


@torch.no_grad()
def predict_all(model, sequences, spec, cfg: EvalConfig, device, info: DistInfo = DistInfo()):
    """Predictions [T, J, 3] (numpy, metres) for every sequence, sharded over ranks and
    gathered, so every rank returns the same list as a single process would."""
    model.eval()
    refiner = cfg.refine if cfg.refine is not None else model.evaluation_refiner()
    mine = []
    for group in length_groups(sequences)[info.rank::info.world_size]:
        pose2d = torch.from_numpy(np.stack([sequences[i].pose2d for i in group])).to(device)
        preds = predict_sequence(model, pose2d, spec.flip_pairs if cfg.flip else None, cfg.max_batch,
                                 output_flip_pairs=spec.skeleton.flip_pairs)  # 2D and 3D layouts may differ
        for row, index in enumerate(group):
            pred = preds[row:row + 1]
            if refiner is not None:
                pred = refine_sequence(refiner, sequences[index], pose2d[row:row + 1], pred, spec.root_joint,
                                       unit_scale(model))
            mine.append((index, pred[0].float().cpu().numpy()))
    gathered = [item for part in gather_objects(mine, info) for item in part]
    predictions = [None] * len(sequences)
    for index, pred in gathered:
        predictions[index] = pred
    return predictions


def refine_sequence(refine, seq, pose2d, pred, root_joint, scale=1.0):
    """Apply the refine module frame by frame: pose2d [1, T, J, 2], pred [1, T, J, 3] metres ->
    refined [1, T, J, 3] metres. As the published protocol, x_1 is rebuilt from the 2D input, the
    predicted depths, the ground-truth root depth and the intrinsics. ``scale``: the lifter's
    units per metre (1000 for a millimetre model); the module works in the lifter's unit."""
    from models.refine import refine_inputs
    if seq.trajectory is None or seq.intrinsics is None:
        raise ValueError('the refine module needs ground-truth root depth and camera intrinsics')
    x = pred[0][:, None] * scale  # [T, 1, J, 3]; the releases refine it as predicted (root not reset)
    depth = torch.as_tensor(seq.trajectory[:, 2:3] * scale, dtype=x.dtype, device=x.device)
    intrinsics = torch.as_tensor(seq.intrinsics, dtype=x.dtype, device=x.device).expand(len(x), -1)
    x_1 = refine_inputs(pose2d[0][:, None], x, depth, intrinsics)
    return refine(x, x_1)[:, 0][None] / scale


def evaluate(model, sequences, spec, cfg: EvalConfig, device, info: DistInfo = DistInfo(),
             return_predictions=False):
    """Results dict of ``spec.evaluator`` for ``model`` on ``sequences`` (and the
    predictions, [T, J, 3] per sequence, when ``return_predictions``)."""
    if model.is_pretraining:
        results = evaluate_reconstruction(model, sequences, device, info)
        return (results, None) if return_predictions else results
    predictions = predict_all(model, sequences, spec, cfg, device, info)
    zero = model.eval_zero_root if cfg.zero_root is None else cfg.zero_root
    results = EVALUATORS[spec.evaluator](sequences, predictions, spec, zero)
    results['flip_test'] = bool(cfg.flip)
    results['zero_predicted_root'] = bool(zero)
    return (results, predictions) if return_predictions else results


@torch.no_grad()
def evaluate_reconstruction(model, sequences, device, info: DistInfo = DistInfo(), seed=0):
    """Masked-pretraining models: mean objective over non-overlapping test windows, with
    masks drawn from a fixed seed so that the number is comparable between epochs."""
    from common.data.generators import WindowConfig, WindowDataset
    windows = WindowDataset(sequences, WindowConfig('seq2frame', frames=model.receptive_field,
                                                    stride=model.receptive_field, flip=False))
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    total, count = 0.0, 0
    indices = np.arange(info.rank, len(windows), info.world_size)
    for chunk in np.array_split(indices, max(1, len(indices) // 256)):
        if len(chunk) == 0:
            continue
        batch = windows.__getitems__(chunk)
        loss = model.training_loss(batch['input2d'].to(device), batch['target3d'].to(device) * unit_scale(model))
        total, count = total + loss.item() * len(chunk), count + len(chunk)
    torch.set_rng_state(state)
    parts = gather_objects((total, count), info)
    loss = sum(p[0] for p in parts) / max(1, sum(p[1] for p in parts))
    return {'protocol': 'reconstruction', 'reconstruction_loss': loss, 'score': loss,
            'score_name': 'reconstruction loss'}


FORMATTERS['reconstruction'] = lambda r: f"2D reconstruction loss (masked pose modelling): {r['reconstruction_loss']:.5f}"


def format_results(results) -> str:
    return FORMATTERS[results.get('protocol', 'actionwise')](results)


# ----------------------------------------------------------------------------- Human3.6M

def _format_actionwise(results) -> str:
    lines = [f"{'Action':<14}{'frames':>8}{'MPJPE':>9}{'P-MPJPE':>9}{'N-MPJPE':>9}{'MPJVE':>8}"]
    for name, row in results['per_action'].items():
        lines.append(f"{name:<14}{row['frames']:>8}{row['mpjpe']:>9.1f}{row['p_mpjpe']:>9.1f}"
                     f"{row['n_mpjpe']:>9.1f}{row['mpjve']:>8.2f}")
    lines += [f"Protocol #1   (MPJPE) action-wise average: {results['mpjpe']:.1f} mm",
              f"Protocol #2 (P-MPJPE) action-wise average: {results['p_mpjpe']:.1f} mm",
              f"Protocol #3 (N-MPJPE) action-wise average: {results['n_mpjpe']:.1f} mm",
              f"Velocity      (MPJVE) action-wise average: {results['mpjve']:.2f} mm",
              f"(frame-weighted MPJPE {results['frame_weighted']['mpjpe']:.1f} mm; "
              f"flip test {'on' if results['flip_test'] else 'off'})"]
    return '\n'.join(lines)


def _to_mm(row):
    return {k: (v * 1000 if k in METRIC_NAMES else v) for k, v in row.items()}


@register_evaluator('actionwise', _format_actionwise)
def evaluate_actionwise(sequences, predictions, spec, zero_predicted_root):
    """Human3.6M protocol: per-stream metrics, frame-weighted per action group, then the
    plain mean over groups (see data-formats 3.1)."""
    meter = ActionwiseMeter()
    for seq, pred in zip(sequences, predictions):
        target = seq.pose3d
        pred = torch.from_numpy(pred).double()
        if zero_predicted_root:
            pred = zero_root(pred, spec.root_joint)
        meter.update_stream(seq.group, pred, torch.from_numpy(target).double())
    raw = meter.result()
    results = {'protocol': 'actionwise'}
    results.update({k: raw[k] * 1000 for k in METRIC_NAMES})
    results['per_action'] = {name: _to_mm(row) for name, row in raw['per_action'].items()}
    results['frame_weighted'] = _to_mm(raw['frame_weighted'])
    results['score'], results['score_name'] = results['mpjpe'], 'MPJPE'
    return results


def write_results(results, run_config, results_json=None, log_dir=None):
    """Write the results dict (mm, unrounded) with the run's config to each requested path."""
    payload = {k: v for k, v in results.items() if k not in ('score', 'score_name')}
    payload['config'] = run_config
    for path in [results_json, os.path.join(log_dir, 'results.json') if log_dir else None]:
        if not path:
            continue
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            tmp = path + '.tmp'
            with open(tmp, 'w') as handle:
                json.dump(payload, handle, indent=2, default=float)
            os.replace(tmp, path)
        except OSError as err:
            raise UserError(f"cannot write results to '{path}': {err.strerror}") from None
        print(f'INFO: results written to {path}')


register_evaluator('mpi_inf_3dhp', format_3dhp, export_3dhp)(evaluate_3dhp)
