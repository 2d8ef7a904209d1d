"""Uplift-and-Upsample (Einfalt et al., WACV 2023): a strided uplifting transformer that
lifts sparse 2D keyframes to dense 3D poses.

Pipeline for one window of N frame tokens spaced ``sequence_stride`` (s_out) video frames
apart, of which only every ``mask_stride`` (s_in) video frames carry a 2D pose:

1. spatial stage per frame (tokens = joints) -> one token per frame;
2. tokens of non-keyframes are replaced by a learned token, temporal positional
   encoding added; temporal blocks, the first ``masked_attention_layers`` of them with
   an additive -1e9 mask on non-keyframe keys;
3. sequence head on every token; strided blocks (attention + strided convolution)
   shrink the tokens to one, which the centre head turns into the centre pose.

Joint order: the published weights use their own 17-joint order. This model keeps its
weights in that order and permutes at its borders, so ``forward``, ``lift``,
``training_loss`` and ``predict_sequence`` take and return ``h36m_17`` order (pass
``official_order=True`` to ``lift`` for the raw order). Keras ``.h5`` weights load with
``common.keras_import.load_uplift_h5``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.eval.metrics import mpjpe
from models import register_model
from models.base import Lifter
from models.blocks import Attention, Block, DropPath

# Official joint k is h36m_17 joint OFFICIAL_FROM_H36M[k] (root: official 6 = h36m 0).
OFFICIAL_FROM_H36M = (3, 2, 1, 4, 5, 6, 0, 8, 7, 9, 10, 16, 15, 14, 11, 12, 13)
OFFICIAL_FLIP_ORDER = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 10, 16, 15, 14, 13, 12, 11)
MASK_LOGIT = -1e9  # additive, not -inf: a window without keyframes stays finite

_351 = dict(num_frame=71, sequence_stride=5, mask_stride=(5, 10, 20), strides=(3, 10, 3),
            paddings=((0, 0), (0, 0), (0, 0)))
_SHARED = dict(spatial_dim=32, temporal_dim=384, num_heads=8, mlp_ratio=2.0, spatial_depth=4,
               temporal_depth=4, masked_attention_layers=1, drop_path_rate=(0.1, 0.1, 0.0))
PRESETS = {
    'h36m_351': {**_SHARED, **_351},
    'h36m_351_pt': {**_SHARED, **_351},   # same network, initialised from amass_351
    'amass_351': {**_SHARED, **_351},
    'h36m_81': {**_SHARED, 'num_frame': 41, 'sequence_stride': 2, 'mask_stride': (4, 10, 20),
                'strides': (4, 4, 3), 'paddings': ((1, 1), (0, 0), (0, 0))},
}


def strided_token_counts(num_frame, strides, paddings):
    """Token counts entering each strided block, then the final count: (27, 9, 3, 1)."""
    counts = [num_frame]
    for stride, (left, right) in zip(strides, paddings):
        counts.append(math.ceil((counts[-1] + left + right - 2) / stride))
    return tuple(counts)


def evaluation_windows(num_frames, centres, seq_len, sequence_stride, mask_stride=None):
    """The official test-time windows of one video.

    Slot n of the window centred on frame i stands for the virtual frame
    v = i + (n - seq_len // 2) * sequence_stride; outside the video it repeats the first or
    last real frame on the same stride grid. centres -- [W] long (frames i).
    Returns frame_index [W, N] long, valid_mask [W, N] float (1 = real frame) and
    stride_mask [W, N] bool (v % mask_stride == 0; all True without mask_stride)."""
    centres = torch.as_tensor(centres, dtype=torch.long)[:, None]
    offsets = torch.arange(seq_len, device=centres.device) - seq_len // 2
    virtual = centres + offsets * sequence_stride
    steps = torch.minimum(torch.maximum(offsets, -(centres // sequence_stride)),
                          (num_frames - 1 - centres) // sequence_stride)
    frame_index = centres + steps * sequence_stride
    valid = ((virtual >= 0) & (virtual < num_frames)).float()
    stride_mask = torch.ones_like(virtual, dtype=torch.bool) if mask_stride is None \
        else torch.remainder(virtual, mask_stride) == 0
    return frame_index, valid, stride_mask


def interpolate_keyframes(pred, frame_indices, keyframe_stride):
    """Keep predictions at frames whose index is a multiple of ``keyframe_stride`` and fill
    the others linearly (distances in array positions); frames after a video's last
    keyframe copy it. Videos are concatenated: one starts wherever the index does not increase,
    and each must start with a keyframe.

    pred -- [M, ...] tensor; frame_indices -- [M] long. Returns [M, ...]."""
    frame_indices = torch.as_tensor(frame_indices, device=pred.device)
    count = frame_indices.shape[0]
    position = torch.arange(count, device=pred.device)
    is_key = frame_indices % keyframe_stride == 0
    starts = torch.ones_like(is_key)
    starts[1:] = frame_indices[1:] <= frame_indices[:-1]
    video = starts.long().cumsum(0)
    left = torch.where(is_key, position, -1).cummax(0).values
    if bool(((left < 0) | (video[left.clamp(min=0)] != video)).any()):
        raise ValueError('every video must start with a keyframe')
    right = torch.where(is_key, position, count).flip(0).cummin(0).values.flip(0)
    right_in = right.clamp(max=count - 1)
    between = ~is_key & (right < count) & (video[right_in] == video)
    d_left, d_right = (position - left).to(pred.dtype), (right_in - position).to(pred.dtype)
    total = torch.where(between, d_left + d_right, torch.ones_like(d_left))
    w_left = torch.where(between, d_right / total, torch.ones_like(d_left))
    w_right = torch.where(between, d_left / total, torch.zeros_like(d_left))
    shape = (count,) + (1,) * (pred.ndim - 1)
    return pred[left] * w_left.view(shape) + pred[right_in] * w_right.view(shape)


class MaskableBlock(Block):
    """Pre-norm block whose attention takes an additive key mask [B, 1, 1, L]."""

    def forward(self, x, attn_mask=None):
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def attention_probabilities(attn, x, attn_mask=None):
    """Softmax attention map [B, H, L, L] of an ``Attention`` module on x [B, L, C]."""
    qkv = attn.qkv(x).reshape(x.shape[0], x.shape[1], 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    logits = qkv[0] @ qkv[1].transpose(-2, -1) * attn.scale
    return (logits if attn_mask is None else logits + attn_mask).softmax(-1)


class StridedBlock(nn.Module):
    """Attention, then an MLP whose second layer is a kernel-3 strided convolution.

    x [B, L, C] -> [B, ceil((L + p0 + p1 - 2) / stride), C]. The residual drops its first
    (last) row when p0 (p1) is 0 and keeps every stride-th row."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, stride, padding,
                 drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.stride, self.padding = stride, tuple(padding)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, num_heads, qkv_bias, None, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.expand = nn.Linear(dim, int(dim * mlp_ratio))   # the official kernel-1 Conv1D
        self.reduce = nn.Conv1d(int(dim * mlp_ratio), dim, 3, stride)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        z = self.drop(F.relu(self.expand(self.norm2(x))))
        z = self.drop(self.reduce(F.pad(z.transpose(1, 2), self.padding))).transpose(1, 2)
        start, stop = int(self.padding[0] == 0), x.shape[1] - int(self.padding[1] == 0)
        return x[:, start:stop:self.stride] + self.drop_path(z)


class UpliftUpsample(Lifter):
    """Uplift-and-Upsample transformer; argument meanings in ``uplift_upsample``."""

    predicts = 'centre'

    def __init__(self, num_frame, sequence_stride, mask_stride, strides, paddings, spatial_dim,
                 temporal_dim, num_heads, mlp_ratio, spatial_depth, temporal_depth, num_joints=17,
                 masked_attention_layers=1, qkv_bias=True, dropout=0.0, attn_drop_rate=0.0,
                 drop_path_rate=(0.1, 0.1, 0.0), loss_weights=(0.5, 0.5)):
        super().__init__()
        if num_frame % 2 == 0 or spatial_depth < 1 or temporal_depth < 1 or not strides:
            raise ValueError('uplift_upsample needs an odd num_frame and at least one spatial, '
                             'temporal and strided block')
        counts = strided_token_counts(num_frame, strides, paddings)
        if counts[-1] != 1:
            raise ValueError(f'strides {strides} / paddings {paddings} leave {counts[-1]} tokens, not 1')
        mask_stride = [mask_stride] if isinstance(mask_stride, int) else list(mask_stride or [])
        if any(m % sequence_stride for m in mask_stride):
            raise ValueError('every mask_stride must be a multiple of sequence_stride')
        self.num_frame, self.sequence_stride, self.num_joints = num_frame, sequence_stride, num_joints
        self.mask_stride = mask_stride
        self.has_strided_input = bool(mask_stride) and mask_stride[0] != 1
        self.eval_mask_stride = mask_stride[0] if self.has_strided_input else None
        self.masked_attention_layers = masked_attention_layers if self.has_strided_input else 0
        self.receptive_field = (num_frame - 1) * sequence_stride + 1
        self.loss_weights = tuple(loss_weights)
        rates = [drop_path_rate] * 3 if isinstance(drop_path_rate, (int, float)) else list(drop_path_rate)

        def linspace(rate, depth):
            return torch.linspace(0, rate, depth).tolist()

        self.keypoint_embedding = nn.Linear(2, spatial_dim)
        self.spatial_pe = nn.Parameter(torch.zeros(num_joints, spatial_dim))
        self.token_dropout = nn.Dropout(dropout)
        self.spatial_blocks = nn.ModuleList([
            Block(spatial_dim, num_heads, mlp_ratio, qkv_bias, None, dropout, attn_drop_rate, rate,
                  act_layer=nn.GELU, norm_eps=1e-5) for rate in linspace(rates[0], spatial_depth)])
        self.spatial_norm = nn.LayerNorm(spatial_dim, eps=1e-6)
        self.spatial_to_temporal = nn.Linear(num_joints * spatial_dim, temporal_dim)
        self.temporal_pe = nn.Parameter(torch.zeros(num_frame, temporal_dim))
        if self.has_strided_input:
            self.strided_input_token = nn.Parameter(torch.zeros(temporal_dim))
        self.temporal_blocks = nn.ModuleList([
            MaskableBlock(temporal_dim, num_heads, mlp_ratio, qkv_bias, None, dropout, attn_drop_rate,
                          rate, act_layer=nn.ReLU, norm_eps=1e-5)
            for rate in linspace(rates[1], temporal_depth)])
        self.strided_pe = nn.ParameterList([nn.Parameter(torch.zeros(n, temporal_dim)) for n in counts[:-1]])
        self.strided_blocks = nn.ModuleList([
            StridedBlock(temporal_dim, num_heads, mlp_ratio, qkv_bias, stride, padding, dropout,
                         attn_drop_rate, rate)
            for stride, padding, rate in zip(strides, paddings, linspace(rates[2], len(strides)))])
        self.sequence_head = nn.Linear(temporal_dim, 3 * num_joints)
        self.centre_head = nn.Linear(temporal_dim, 3 * num_joints)
        for parameter in [self.spatial_pe, self.temporal_pe, *self.strided_pe]:
            nn.init.trunc_normal_(parameter, std=0.02)
        if self.has_strided_input:
            nn.init.trunc_normal_(self.strided_input_token, std=0.02)
        permute = torch.tensor(OFFICIAL_FROM_H36M if num_joints == 17 else range(num_joints))
        self.register_buffer('to_official', permute, persistent=False)
        self.register_buffer('from_official', permute.argsort(), persistent=False)

    # -- stages (official joint order inside) --------------------------------------------
    def spatial_tokens(self, keypoints):
        """keypoints [B, T, J, 2] (official order) -> frame tokens [B, T, Ct]."""
        batch, frames = keypoints.shape[:2]
        x = self.keypoint_embedding(keypoints.flatten(0, 1)) + self.spatial_pe
        x = self.token_dropout(x)
        for block in self.spatial_blocks:
            x = block(x)
        x = self.spatial_norm(x).reshape(batch, frames, -1)
        return self.spatial_to_temporal(x)

    def temporal_stage(self, tokens, stride_mask, intermediates=None):
        """tokens [B, N, Ct], stride_mask [B, N] bool (True = keyframe) ->
        (sequence [B, N, J, 3], centre [B, J, 3]), official joint order."""
        key_mask = None
        if self.has_strided_input:
            keep = stride_mask.to(tokens.dtype)[..., None]
            tokens = keep * tokens + (1 - keep) * self.strided_input_token
            key_mask = ((1 - keep[..., 0]) * MASK_LOGIT)[:, None, None, :]
        x = tokens + self.temporal_pe
        for index, block in enumerate(self.temporal_blocks):
            mask = key_mask if index < self.masked_attention_layers else None
            if intermediates is not None:
                intermediates[f'temporal_block_{index + 1}_attention'] = \
                    attention_probabilities(block.attn, block.norm1(x), mask)
            x = block(x, mask)
        sequence = self.sequence_head(x).unflatten(-1, (self.num_joints, 3))
        if intermediates is not None:
            intermediates['after_temporal_blocks'] = x
        for index, (block, pe) in enumerate(zip(self.strided_blocks, self.strided_pe)):
            x = block(x + pe)
            if intermediates is not None:
                intermediates[f'after_strided_temporal_block_{index + 1}'] = x
        centre = self.centre_head(x[:, 0]).unflatten(-1, (self.num_joints, 3))
        return sequence, centre

    # -- public API (h36m_17 order unless official_order) ----------------------------------
    def lift(self, keypoints, stride_mask, official_order=False, return_intermediates=False):
        """keypoints [B, N, J, 2] (one frame per token; non-keyframe values are ignored),
        stride_mask [B, N] bool -> (sequence [B, N, J, 3], centre [B, J, 3])
        [, intermediates dict]."""
        if not official_order:
            keypoints = keypoints[:, :, self.to_official]
        intermediates = {} if return_intermediates else None
        tokens = self.spatial_tokens(keypoints)
        if return_intermediates:
            intermediates['after_spatial_to_temporal_fc'] = tokens
        sequence, centre = self.temporal_stage(tokens, stride_mask, intermediates)
        if not official_order:
            sequence, centre = sequence[:, :, self.from_official], centre[:, self.from_official]
        return (sequence, centre, intermediates) if return_intermediates else (sequence, centre)

    def centred_stride_mask(self, batch, mask_stride=None, device=None):
        """[B, N] bool: keyframes every mask_stride video frames (default eval_mask_stride),
        the centre token being one; all True without strided input."""
        if not self.has_strided_input:
            return torch.ones(batch, self.num_frame, dtype=torch.bool, device=device)
        virtual = (torch.arange(self.num_frame, device=device) - self.num_frame // 2) * self.sequence_stride
        return (torch.remainder(virtual, mask_stride or self.eval_mask_stride) == 0).expand(batch, -1)

    def _tokens_of_window(self, x):
        if x.shape[1] != self.receptive_field:
            raise ValueError(f'expected windows of {self.receptive_field} frames, got {x.shape[1]}')
        return x[:, ::self.sequence_stride]

    def forward(self, x):
        """x [B, receptive_field, J, 2] -> centre pose [B, 1, J, 3]. The window is sampled every
        sequence_stride frames; keyframes every eval_mask_stride frames from the centre."""
        mask = self.centred_stride_mask(x.shape[0], device=x.device)
        return self.lift(self._tokens_of_window(x), mask)[1][:, None]

    def loss_terms(self, x, target, stride_mask=None):
        """(centre, sequence) MPJPE against root-relative targets.

        x [B, receptive_field, J, 2], target [B, receptive_field, J, 3]; stride_mask [B, N]
        or None: in training mode each sample then draws one of ``mask_stride`` and a random
        keyframe phase, as the official training does; in eval mode the centred mask."""
        batch = x.shape[0]
        target = self._tokens_of_window(target)  # root-relative already (common.data.pose_codec)
        if stride_mask is None and self.training and self.has_strided_input:
            choices = torch.tensor(self.mask_stride, device=x.device)
            stride = choices[torch.randint(len(choices), (batch,), device=x.device)] // self.sequence_stride
            phase = (torch.rand(batch, device=x.device) * stride).long()
            offsets = torch.arange(self.num_frame, device=x.device) - self.num_frame // 2
            stride_mask = torch.remainder(offsets + phase[:, None], stride[:, None]) == 0
        elif stride_mask is None:
            stride_mask = self.centred_stride_mask(batch, device=x.device)
        sequence, centre = self.lift(self._tokens_of_window(x), stride_mask)
        return mpjpe(centre, target[:, self.num_frame // 2]), mpjpe(sequence, target)

    def training_loss(self, x, target, stride_mask=None):
        """loss_weights[0] * centre + loss_weights[1] * sequence MPJPE (see ``loss_terms``)."""
        centre_loss, sequence_loss = self.loss_terms(x, target, stride_mask)
        return self.loss_weights[0] * centre_loss + self.loss_weights[1] * sequence_loss

    def evaluation_variants(self):
        """One evaluation per keyframe spacing s_in, as the paper reports: (label, settings)."""
        if not self.has_strided_input:
            return [(None, {})]
        return [(f's_in = {s}', {'eval_mask_stride': s}) for s in self.mask_stride]

    @torch.no_grad()
    def predict_sequence(self, x, max_batch=1024, mask_stride=None):
        """Official evaluation of whole videos: one window centred on every sequence_stride-th
        frame (edge-copy padding on the stride grid, keyframes where the virtual frame index is
        a multiple of mask_stride), centre predictions, linear interpolation in between.

        x [B, T, J, 2] -> [B, T, J, 3]. max_batch -- windows per pass; mask_stride -- s_in (default
        eval_mask_stride); the spatial stage runs only on frames that some window uses as a keyframe."""
        batch, frames = x.shape[:2]
        mask_stride = (mask_stride or self.eval_mask_stride) if self.has_strided_input else None
        centres = torch.arange(0, frames, self.sequence_stride)
        frame_index, _, stride_mask = evaluation_windows(
            frames, centres, self.num_frame, self.sequence_stride, mask_stride)
        needed = frame_index[stride_mask].unique()           # on the CPU: no device sync
        row_of = torch.zeros(frames, dtype=torch.long)
        row_of[needed] = torch.arange(len(needed))
        tokens = self.spatial_tokens(x[:, needed.to(x.device)][:, :, self.to_official])
        windows = tokens[:, row_of[frame_index].to(x.device)].flatten(0, 1)   # [B*W, N, Ct]
        masks = stride_mask.to(x.device).expand(batch, -1, -1).flatten(0, 1)
        centre = torch.cat([self.temporal_stage(chunk, mask)[1] for chunk, mask in
                            zip(windows.split(max_batch), masks.split(max_batch))])
        dense = centre.new_zeros(frames, batch, self.num_joints, 3)
        dense[centres.to(x.device)] = centre.unflatten(0, (batch, -1)).transpose(0, 1)
        dense = interpolate_keyframes(dense, torch.arange(frames, device=x.device), self.sequence_stride)
        return dense.transpose(0, 1)[:, :, self.from_official]


_OFFICIAL_NAMES = {'num_frames': 'num_frame', 'num_keypoints': 'num_joints',
                   'spatial_d_model': 'spatial_dim', 'temporal_d_model': 'temporal_dim',
                   'first_strided_token_attention_layer': 'masked_attention_layers',
                   'drop_rate': 'dropout'}


@register_model('uplift_upsample', aliases=('uplift', 'uplift_upsample_transformer'))
def uplift_upsample(preset=None, num_frame=None, sequence_stride=None, mask_stride=None,
                    strides=None, paddings=None, spatial_dim=None, temporal_dim=None, num_heads=None,
                    mlp_ratio=None, spatial_depth=None, temporal_depth=None, num_joints=17,
                    masked_attention_layers=None, qkv_bias=True, dropout=0.0, attn_drop_rate=0.0,
                    drop_path_rate=None, loss_weights=(0.5, 0.5), root_joint=0, embed_dim=None,
                    depth=None, **official_names):
    """Build Uplift-and-Upsample. Unset values come from ``preset`` (default 'h36m_351').

    preset -- 'h36m_351' | 'h36m_351_pt' | 'amass_351' | 'h36m_81' (released configurations)
    num_frame -- N, frame tokens per window (71); receptive field (N - 1) * s_out + 1
    sequence_stride -- s_out, video frames between tokens (5)
    mask_stride -- s_in list: keyframe spacings in video frames, multiples of s_out ([5, 10, 20]);
        the first is used by forward / predict_sequence unless ``eval_mask_stride`` is changed
    strides, paddings -- one strided block per entry ([3, 10, 3]; (left, right) zero padding)
    spatial_dim, temporal_dim -- widths Cs (32) and Ct (384); embed_dim is an alias of temporal_dim
    spatial_depth, temporal_depth -- block counts (4, 4); depth sets both
    masked_attention_layers -- temporal blocks with the keyframe key mask (1)
    num_heads (8), mlp_ratio (2), dropout, attn_drop_rate, drop_path_rate (float or per stage)
    loss_weights -- (centre, sequence) (0.5, 0.5); root_joint -- accepted from earlier configs (targets
        arrive root-relative)
    Official constructor names (num_frames, num_keypoints, spatial_d_model, temporal_d_model,
    first_strided_token_attention_layer, drop_rate) are accepted as aliases."""
    given = dict(num_frame=num_frame, sequence_stride=sequence_stride, mask_stride=mask_stride,
                 strides=strides, paddings=paddings, spatial_dim=spatial_dim,
                 temporal_dim=temporal_dim if temporal_dim is not None else embed_dim,
                 num_heads=num_heads, mlp_ratio=mlp_ratio, spatial_depth=spatial_depth,
                 temporal_depth=temporal_depth, masked_attention_layers=masked_attention_layers,
                 drop_path_rate=drop_path_rate, num_joints=num_joints, qkv_bias=qkv_bias,
                 dropout=dropout, attn_drop_rate=attn_drop_rate, loss_weights=loss_weights)
    if depth is not None:
        for key in ('spatial_depth', 'temporal_depth'):
            given[key] = depth if given[key] is None else given[key]
    for name, value in official_names.items():
        if name not in _OFFICIAL_NAMES:
            raise TypeError(f"uplift_upsample() got an unexpected keyword argument '{name}'")
        given[_OFFICIAL_NAMES[name]] = value
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    config = dict(PRESETS[preset or 'h36m_351'])
    config.update({k: v for k, v in given.items() if v is not None})
    return UpliftUpsample(**config)


def options_from_official_config(config):
    """Constructor keywords from an official JSON configuration dict (e.g. config/h36m_81.json)."""
    if config.get('OUTPUT_BN') or config.get('USE_REFINE') or config.get('TOKEN_MASK_RATE', 0) > 0:
        raise ValueError('OUTPUT_BN, USE_REFINE and token masking are not supported')
    return dict(num_frame=config['SEQUENCE_LENGTH'], sequence_stride=config['SEQUENCE_STRIDE'],
                mask_stride=config['MASK_STRIDE'], strides=config['STRIDES'],
                paddings=config['PADDINGS'], spatial_dim=config['SPATIAL_EMBED_DIM'],
                temporal_dim=config['TEMPORAL_EMBED_DIM'], num_heads=config['NUM_HEADS'],
                mlp_ratio=config['MLP_RATIO'], spatial_depth=config['SPATIAL_TRANSFORMER_BLOCKS'],
                temporal_depth=config['TEMPORAL_TRANSFORMER_BLOCKS'],
                num_joints=config['NUM_KEYPOINTS'], qkv_bias=config['QKV_BIAS'],
                masked_attention_layers=config['FIRST_STRIDED_TOKEN_ATTENTION_LAYER'],
                dropout=config['DROP_RATE'], attn_drop_rate=config['ATTENTION_DROP_RATE'],
                drop_path_rate=config['DROP_PATH_RATE'],
                loss_weights=(config['LOSS_WEIGHT_CENTER'], config['LOSS_WEIGHT_SEQUENCE']))
