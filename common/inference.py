"""Whole-sequence prediction for any registered model, with optional flip averaging.

The model decides how: ``model.predict_sequence`` when it has one (convolutions over
the padded sequence, chunkwise retention), otherwise windows chosen by
``model.predicts``: centre-frame windows around every frame, or consecutive
seq2seq windows of ``receptive_field`` frames whose last one is the sequence's
last ``receptive_field`` frames.
"""
import torch

from common.units import unit_scale


def mirror_pose(pose, left, right):
    """Mirror poses in normalised / camera coordinates: x -> -x, left and right joints swapped.

    pose -- [..., J, C] with x in channel 0."""
    mirrored = pose.clone()
    mirrored[..., 0] *= -1
    mirrored[..., left + right, :] = mirrored[..., right + left, :]
    return mirrored


def centre_window_index(length, receptive_field, tds=1, device=None):
    """[T, receptive_field] frame indices of every frame's centred window, clamped to the
    sequence (edge padding by repeating the end frames)."""
    pad = (receptive_field - 1) // 2
    offsets = torch.arange(-pad, receptive_field - pad, device=device) * tds
    return (torch.arange(length, device=device)[:, None] + offsets).clamp_(0, length - 1)


def centre_windows(pose2d, receptive_field, tds=1):
    """Every frame's centred window, edge-padded at both ends.

    pose2d [B, T, J, C] -> [B * T, receptive_field, J, C] (sample b * T + t is frame t of b)."""
    batch, length = pose2d.shape[:2]
    index = centre_window_index(length, receptive_field, tds, pose2d.device)
    return pose2d[:, index].reshape(batch * length, receptive_field, *pose2d.shape[2:])


def _predict_centre(model, pose2d, tds, max_batch):
    """One window per frame, gathered ``max_batch`` at a time. A model with a per-frame first
    stage (``embed_frames`` / ``forward_embedded``) embeds every frame once and its windows
    gather the features, so overlapping windows do not recompute it."""
    batch, length = pose2d.shape[:2]
    shared = hasattr(model, 'forward_embedded')
    source = (model.embed_frames(pose2d) if shared else pose2d).flatten(0, 1)  # [B * T, ...]
    index = centre_window_index(length, model.receptive_field, tds, pose2d.device)
    rows = (torch.arange(batch, device=pose2d.device)[:, None, None] * length + index).flatten(0, 1)
    outputs = [model.forward_embedded(source[chunk]) if shared else model(source[chunk])
               for chunk in rows.split(max_batch)]
    return torch.cat(outputs)[:, -1 if outputs[0].shape[1] == 1 else model.receptive_field // 2] \
        .reshape(batch, length, *outputs[0].shape[2:])


def _predict_seq2seq(model, pose2d, max_batch):
    """Consecutive windows of F frames; the last window is the last F frames (right-padded by
    repeating the last frame when the sequence is shorter than F); one prediction per frame."""
    frames = model.receptive_field
    length = pose2d.shape[1]
    if length < frames:
        pad = pose2d[:, -1:].expand(-1, frames - length, -1, -1)
        return _predict_seq2seq(model, torch.cat([pose2d, pad], 1), max_batch)[:, :length]
    starts = list(range(0, length - frames + 1, frames))
    if starts[-1] + frames < length:
        starts.append(length - frames)
    windows = torch.stack([pose2d[:, s:s + frames] for s in starts], 1)  # [B, W, F, J, C]
    flat = windows.flatten(0, 1)
    out = torch.cat([model(chunk) for chunk in flat.split(max_batch)])
    out = out.reshape(windows.shape[0], len(starts), frames, *out.shape[2:])
    result = out.new_empty(pose2d.shape[0], length, *out.shape[3:])
    # the last window first: the earlier windows keep the overlap, so the last one contributes
    # only its final T mod F frames (as the official evaluation)
    for i in [len(starts) - 1] + list(range(len(starts) - 1)):
        result[:, starts[i]:starts[i] + frames] = out[:, i]
    return result


@torch.no_grad()
def predict_sequence(model, pose2d, flip_pairs=None, tds=1, max_batch=1024, output_flip_pairs=None):
    """Predict every frame of whole sequences.

    model -- a registered lifter in eval mode
    pose2d -- [B, T, J, 2] normalised screen coordinates (any T >= 1)
    flip_pairs -- (left joints, right joints) for flip averaging, or None
    tds -- temporal downsampling of centre-frame windows (P-STMO's -tds)
    output_flip_pairs -- (left, right) of the 3D output when they differ from the 2D input's
    (e.g. COCO keypoints in, Human3.6M joints out); default flip_pairs
    Returns [B, T, J, 3] in metres, whatever the model's ``output_unit``."""
    scale = unit_scale(model)

    def run(x):
        out = raw(x)
        return out if scale == 1.0 else out / scale

    def raw(x):
        if hasattr(model, 'predict_sequence'):
            return model.predict_sequence(x)
        if model.predicts == 'centre':
            return _predict_centre(model, x, tds, max_batch)
        return _predict_seq2seq(model, x, max_batch)

    if flip_pairs is None:
        return run(pose2d)
    left, right = list(flip_pairs[0]), list(flip_pairs[1])
    out_left, out_right = (list(p) for p in (output_flip_pairs or flip_pairs))
    both = run(torch.cat([pose2d, mirror_pose(pose2d, left, right)]))
    plain, flipped = both.chunk(2)
    return (plain + mirror_pose(flipped, out_left, out_right)) / 2
