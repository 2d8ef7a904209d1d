"""Whole-sequence prediction for any registered lifter, with optional flip averaging.

The model decides how (``Lifter.predict_sequence``: convolutions over the padded sequence,
chunkwise retention, or the generic windows of models/windows.py); this module adds the
flip test and returns metres whatever the model's output unit.
"""
import numpy as np
import torch

from common.data.pose_codec import mirror_pose, unit_scale


@torch.no_grad()
def predict_sequence(model, pose2d, flip_pairs=None, max_batch=1024, output_flip_pairs=None):
    """Predict every frame of whole sequences.

    model -- a registered lifter in eval mode
    pose2d -- [B, T, J, 2] or one sequence [T, J, 2], normalised screen coordinates (any T >= 1),
    a tensor or a numpy array; [..., 3] with the detector's confidence for models that take it
    flip_pairs -- (left joints, right joints) of the 2D input for flip averaging, or None
    max_batch -- windows per forward pass
    output_flip_pairs -- (left, right) of the 3D output when they differ from the 2D input's
    (e.g. COCO keypoints in, Human3.6M joints out); default flip_pairs
    Returns [B, T, J, 3] (or [T, J, 3]) in metres, whatever the model's ``output_unit``, as a
    tensor on the model's device, or a numpy array when pose2d is one."""
    if not torch.is_tensor(pose2d):
        return predict_sequence(model, torch.as_tensor(np.asarray(pose2d, np.float32)), flip_pairs, max_batch,
                                output_flip_pairs).cpu().numpy()
    if pose2d.dim() == 3:
        return predict_sequence(model, pose2d[None], flip_pairs, max_batch, output_flip_pairs)[0]
    if pose2d.dim() != 4 or pose2d.shape[-1] not in (2, 3):
        raise ValueError(f'pose2d must be [B, T, J, 2] or [T, J, 2], not {list(pose2d.shape)}')
    pose2d = pose2d.to(next((p.device for p in model.parameters()), pose2d.device))
    scale = unit_scale(model)

    def run(x):
        out = model.predict_sequence(x, max_batch)
        return out if scale == 1.0 else out / scale

    if flip_pairs is None:
        return run(pose2d)
    left, right = flip_pairs
    out_left, out_right = output_flip_pairs or flip_pairs
    plain, flipped = run(torch.cat([pose2d, mirror_pose(pose2d, left, right)])).chunk(2)
    return (plain + mirror_pose(flipped, out_left, out_right)) / 2
