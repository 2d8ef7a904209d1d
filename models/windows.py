"""Windows over whole sequences for the generic sequence prediction of ``models.base.Lifter``:
an edge-padded window around every frame (centre-frame models), or consecutive windows whose
last one ends at the last frame (sequence models). Shapes are [B, T, J, C]."""
import torch


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


def predict_centre(model, pose2d, tds, max_batch):
    """One window per frame, gathered ``max_batch`` at a time. A model with a per-frame first
    stage (``shares_frame_features``: ``embed_frames`` / ``forward_embedded``) embeds every frame
    once and its windows gather the features, so overlapping windows do not recompute it.
    pose2d [B, T, J, 2] -> [B, T, J, 3]."""
    batch, length = pose2d.shape[:2]
    shared = model.shares_frame_features
    source = (model.embed_frames(pose2d) if shared else pose2d).flatten(0, 1)  # [B * T, ...]
    index = centre_window_index(length, model.receptive_field, tds, pose2d.device)
    rows = (torch.arange(batch, device=pose2d.device)[:, None, None] * length + index).flatten(0, 1)
    outputs = [model.forward_embedded(source[chunk]) if shared else model(source[chunk])
               for chunk in rows.split(max_batch)]
    return torch.cat(outputs)[:, -1 if outputs[0].shape[1] == 1 else model.receptive_field // 2] \
        .reshape(batch, length, *outputs[0].shape[2:])


def predict_seq2seq(model, pose2d, max_batch):
    """Consecutive windows of F frames; the last window is the last F frames (right-padded by
    repeating the last frame when the sequence is shorter than F); one prediction per frame."""
    frames = model.receptive_field
    length = pose2d.shape[1]
    if length < frames:
        pad = pose2d[:, -1:].expand(-1, frames - length, -1, -1)
        return predict_seq2seq(model, torch.cat([pose2d, pad], 1), max_batch)[:, :length]
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
