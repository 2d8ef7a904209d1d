"""Strided Transformer (Li et al., TMM 2022) and the building blocks it shares with P-STMO and
APTPose (models/stmo.py): a pre-norm temporal transformer over all frames, a strided transformer
that shrinks the frames to the centre one, and BatchNorm + Conv1d pose heads. The refine module
that follows these lifters is in models/refine.py.

Module and parameter names follow the published checkpoints (``Transformer.model.layers.i.
self_attn.linears.0-3``, ``sublayer.k.norm.a_2``, ``Transformer_reduce.model.pos_embedding_1``,
``fcn``, ``fcn_1``), so the official files load without renaming.
Where joints and coordinates share one channel axis it is joint-major: index = C * j + c.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.eval.metrics import mpjpe
from models import register_model
from models.base import Lifter
from models.blocks import channels_last_norm, pointwise

__all__ = ['PoseLayerNorm', 'MultiHeadAttention', 'pointwise', 'channels_last_norm',
           'TemporalEncoder', 'StridedEncoder',
           'CentreFrameLifter', 'StridedTransformer', 'pose_head', 'run_head',
           'centre_and_sequence_loss', 'strides_for', 'resolve_alias', 'transformer_config',
           'check_io_channels']

# Frames -> strides of the strided encoder, as the Strided Transformer release defines them.
STRIDED_TABLE = {27: [3, 3, 3], 351: [3, 9, 13]}
NUM_STRIDED_POS_EMBEDDINGS = 3  # the strided encoder stores three, whatever its depth


def resolve_alias(name, *values, default=None):
    """The one value given among alias keywords (canonical and official spellings), else default."""
    given = [v for v in values if v is not None]
    if any(v != given[0] for v in given[1:]):
        raise TypeError(f'conflicting values for {name}: {given}')
    return given[0] if given else default


def strides_for(num_frame, table, model_name):
    """Stride list of the strided encoder for ``num_frame`` frames from a release's table."""
    if num_frame not in table:
        raise ValueError(f'{model_name} has no stride table entry for {num_frame} frames '
                         f'(supported: {sorted(table)}); pass stride_num explicitly')
    return list(table[num_frame])


class PoseLayerNorm(nn.Module):
    """LayerNorm of the released code: a_2 (x - mean) / (std + eps) + b_2 with the UNBIASED std
    and eps added to the std (not to the variance). [..., C] -> [..., C]"""

    def __init__(self, features, eps=1e-6):
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps, self.features = eps, features  # a plain int: traced graphs keep it a constant

    def forward(self, x):
        # One fused layer_norm: with the biased variance rescaled by sqrt((C - 1) / C) it is the
        # released formula except where eps matters (features with a std near 1e-6).
        scale = ((self.features - 1) / self.features) ** 0.5
        return F.layer_norm(x, (self.features,), self.a_2 * scale, self.b_2, eps=self.eps ** 2)


class MultiHeadAttention(nn.Module):
    """Self-attention with separate q / k / v projections (``linears.0-2``) and output
    projection ``linears.3``; scores scaled by head_dim^-0.5. x [N, L, C] -> [N, L, C]"""

    def __init__(self, dim, heads=8, dropout=0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f'width {dim} is not divisible by {heads} heads')
        self.heads = heads
        self.dropout = dropout
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        n, length, dim = x.shape
        # q, k and v from one matrix product over the stacked projection weights
        weight = torch.cat([proj.weight for proj in self.linears[:3]])
        bias = torch.cat([proj.bias for proj in self.linears[:3]])
        qkv = F.linear(x, weight, bias).view(n, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.linears[3](out.transpose(1, 2).reshape(n, length, dim))


class FeedForward(nn.Module):
    """Position-wise feed-forward. stride None: Linear -> ReLU -> Dropout -> Linear over [N, L, C];
    stride s: Conv1d(k 1) -> ReLU -> Dropout -> Conv1d(k 3, stride s, padding 1) over time,
    [N, L, C] -> [N, ceil(L / s), C]."""

    def __init__(self, dim, hidden, dropout=0.1, stride=None):
        super().__init__()
        self.strided = stride is not None
        if self.strided:
            self.w_1 = nn.Conv1d(dim, hidden, kernel_size=1)
            self.w_2 = nn.Conv1d(hidden, dim, kernel_size=3, stride=stride, padding=1)
        else:
            self.w_1 = nn.Linear(dim, hidden)
            self.w_2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        if not self.strided:
            return self.w_2(self.dropout(F.relu(self.w_1(x))))
        hidden = self.dropout(F.relu(pointwise(self.w_1, x)))
        return self.w_2(hidden.transpose(1, 2)).transpose(1, 2)


class NormedBranch(nn.Module):
    """Pre-norm residual branch (the released ``SublayerConnection`` holds only its norm):
    dropout(fn(norm(x)))."""

    def __init__(self, dim, dropout):
        super().__init__()
        self.norm = PoseLayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, fn):
        return self.dropout(fn(self.norm(x)))


class EncoderLayer(nn.Module):
    """x + Attn(norm(x)), then residual + FF(norm(x)); with a stride s the residual is x[:, ::s]
    (the released kernel-1 max-pool) and the frames shrink to ceil(L / s)."""

    def __init__(self, dim, hidden, heads=8, dropout=0.1, stride=None):
        super().__init__()
        self.stride = stride
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.feed_forward = FeedForward(dim, hidden, dropout, stride)
        self.sublayer = nn.ModuleList(NormedBranch(dim, dropout) for _ in range(2))

    def forward(self, x):
        x = x + self.sublayer[0](x, self.self_attn)
        residual = x if self.stride in (None, 1) else x[:, ::self.stride]
        return residual + self.sublayer[1](x, self.feed_forward)


class EncoderStack(nn.Module):
    """The released ``Encoder``: layers, a final ``norm`` that the files store but forward never
    applies (kept frozen for file compatibility) and, for the strided encoder, positional
    embeddings 1-3 added before layers 0-2, cut to the current length."""

    def __init__(self, depth, dim, hidden, heads=8, dropout=0.1, strides=None, length=None):
        super().__init__()
        self.strided = strides is not None
        if self.strided:
            for k in range(1, NUM_STRIDED_POS_EMBEDDINGS + 1):
                setattr(self, f'pos_embedding_{k}', nn.Parameter(torch.randn(1, length, dim)))
        self.layers = nn.ModuleList(
            EncoderLayer(dim, hidden, heads, dropout, strides[i] if self.strided else None)
            for i in range(depth))
        self.norm = PoseLayerNorm(dim).requires_grad_(False)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            if self.strided and i < NUM_STRIDED_POS_EMBEDDINGS:
                x = x + getattr(self, f'pos_embedding_{i + 1}')[:, :x.shape[1]]
            x = layer(x)
        return x


class TemporalEncoder(nn.Module):
    """Plain temporal transformer (released ``Transformer``): adds its positional embedding
    (1, F, C) to all F frames, optionally keeps only some frames (masked pretraining), runs the
    layers. x [B, F, C] -> [B, F or len(keep), C]. positional False: decoder without embedding."""

    def __init__(self, depth, dim, hidden, length, heads=8, dropout=0.1, positional=True):
        super().__init__()
        if positional:
            self.pos_embedding = nn.Parameter(torch.randn(1, length, dim))
        self.positional = positional
        self.model = EncoderStack(depth, dim, hidden, heads, dropout)

    def forward(self, x, keep=None):
        if self.positional:
            x = x + self.pos_embedding
        if keep is not None:
            x = x.index_select(1, keep)
        return self.model(x)


class StridedEncoder(nn.Module):
    """Strided transformer (released ``Transformer_reduce``): one layer per stride; the frame
    axis shrinks to 1. x [B, F, C] -> [B, 1, C]"""

    def __init__(self, strides, dim, hidden, length, heads=8, dropout=0.1):
        super().__init__()
        remaining = length
        for s in strides:
            remaining = -(-remaining // s)
        if remaining != 1:
            raise ValueError(f'strides {list(strides)} reduce {length} frames to {remaining}, not 1')
        self.model = EncoderStack(len(strides), dim, hidden, heads, dropout, list(strides), length)

    def forward(self, x):
        return self.model(x)


def pose_head(channel, outputs):
    """BatchNorm1d + Conv1d(k 1) head over [B, C, T] (keys ``.0`` and ``.1``)."""
    return nn.Sequential(nn.BatchNorm1d(channel, momentum=0.1), nn.Conv1d(channel, outputs, 1))


def run_head(head, features, joints):
    """features [B, T, C] -> [B, T, joints, K] (joint-major output channels K * j + c)."""
    out = pointwise(head[1], channels_last_norm(head[0], features))
    return out.reshape(features.shape[0], features.shape[1], joints, -1)


def centre_and_sequence_loss(centre, full, target):
    """The released fine-tune objective: MPJPE(all frames) + MPJPE(centre frame).

    centre [B, 1, J, 3], full [B, F, J, 3], target [B, F, J, 3] root-relative, aligned with the
    input frames."""
    pad = (target.shape[1] - 1) // 2
    return mpjpe(full, target) + mpjpe(centre, target[:, pad:pad + 1])


class CentreFrameLifter(Lifter):
    """Shared skeleton: per-frame embedding (``embed``, defined by subclasses) -> temporal
    encoder -> strided encoder -> ``fcn`` (centre frame), and ``fcn_1`` on the temporal encoder's
    output (all frames, auxiliary). strided False builds only the temporal encoder (pretraining)."""

    predicts = 'centre'
    is_pretraining = False
    official_strict = False  # the released loaders copy the model's keys and ignore extra ones
    eval_zero_root = True  # P-STMO / Strided score their predictions with the root set to 0
    default_optimizer = 'adam_amsgrad'  # as the released training scripts
    shares_frame_features = True  # the spatial encoder sees one frame at a time

    def __init__(self, num_frame, out_joints, layers, channel, d_hid, stride_num, heads=8,
                 dropout=0.1, strided=True):
        super().__init__()
        self.receptive_field = num_frame
        self.out_joints = out_joints
        self.Transformer = TemporalEncoder(layers, channel, d_hid, num_frame, heads, dropout)
        if strided:
            self.Transformer_reduce = StridedEncoder(stride_num, channel, d_hid, num_frame, heads, dropout)
            self.fcn = pose_head(channel, 3 * out_joints)
            self.fcn_1 = pose_head(channel, 3 * out_joints)

    def embed(self, x):
        """x [B, F, J, 2] -> [B, F, C]"""
        raise NotImplementedError

    def temporal(self, features):
        """features [B, F, C] -> (centre features [B, 1, C], all-frame features [B, F, C])"""
        sequence = self.Transformer(features)
        return self.Transformer_reduce(sequence), sequence

    def forward_both(self, x):
        """x [B, F, J, 2] -> (centre pose [B, 1, J, 3], per-frame poses [B, F, J, 3])"""
        centre, sequence = self.temporal(self.embed(x))
        return run_head(self.fcn, centre, self.out_joints), run_head(self.fcn_1, sequence, self.out_joints)

    def forward(self, x):
        """x [B, F, J, 2] -> centre-frame pose [B, 1, J, 3]"""
        return self.forward_both(x)[0]

    def embed_frames(self, x):
        """Evaluation: the per-frame embedding of a whole sequence, [B, T, J, 2] -> [B, T, C], which
        every window over those frames shares (see common.eval.inference)."""
        return self.embed(x)

    def forward_embedded(self, features):
        """Evaluation: windows of embedded frames [N, F, C] -> centre poses [N, 1, J, 3]."""
        return run_head(self.fcn, self.temporal(features)[0], self.out_joints)

    def training_loss(self, x, target):
        """Released objective; x [B, F, J, 2], target [B, F, J, 3] -> scalar"""
        return centre_and_sequence_loss(*self.forward_both(x), target)


class StridedTransformer(CentreFrameLifter):
    """Strided Transformer: Conv1d(2J, C, 1) + BN + ReLU + Dropout(0.25) per frame, then the
    shared temporal / strided encoders and heads.

    num_frame -- 27 or 351 (the release's stride table; 351 published); layers -- temporal depth (3);
    channel -- width C (256); d_hid -- feed-forward width (512); stride_num -- strides (from the
    table); num_joints / out_joints -- input / output joints (17)."""

    def __init__(self, num_frame=351, num_joints=17, out_joints=17, layers=3, channel=256, d_hid=512,
                 stride_num=None, heads=8, dropout=0.1):
        stride_num = stride_num or strides_for(num_frame, STRIDED_TABLE, 'the Strided Transformer')
        super().__init__(num_frame, out_joints, layers, channel, d_hid, stride_num, heads, dropout)
        self.encoder = nn.Sequential(nn.Conv1d(2 * num_joints, channel, 1),
                                     nn.BatchNorm1d(channel, momentum=0.1),
                                     nn.ReLU(inplace=True), nn.Dropout(0.25))

    def embed(self, x):
        conv, norm, relu, dropout = self.encoder
        return dropout(relu(channels_last_norm(norm, pointwise(conv, x.flatten(2)))))


def transformer_config(state_dict):
    """layers, channel, d_hid, num_frame read from the temporal encoder's stored shapes."""
    prefix = 'Transformer.model.layers.'
    layers = len({k[len(prefix):].split('.')[0] for k in state_dict if k.startswith(prefix)})
    pos = state_dict['Transformer.pos_embedding']
    return {'layers': layers, 'channel': int(pos.shape[2]), 'num_frame': int(pos.shape[1]),
            'd_hid': int(state_dict[prefix + '0.feed_forward.w_1.weight'].shape[0])}


def check_io_channels(in_channels, out_channels):
    if in_channels != 2 or out_channels != 3:
        raise ValueError('these lifters take 2D inputs and predict 3D: in_channels 2, out_channels 3')


def detect_strided(state_dict):
    """Constructor kwargs for a Strided Transformer state dict, else None."""
    weight = state_dict.get('encoder.0.weight')
    if weight is None or weight.ndim != 3 or 'Transformer_reduce.model.pos_embedding_1' not in state_dict:
        return None
    config = transformer_config(state_dict)
    config.update(num_joints=int(weight.shape[1]) // 2,
                  out_joints=int(state_dict['fcn.1.weight'].shape[0]) // 3)
    return config


@register_model('strided', aliases=('strided_transformer',), detect_official=detect_strided)
def build_strided(num_frame=None, frames=None, num_joints=None, n_joints=None, out_joints=None,
                  layers=None, channel=None, d_hid=None, stride_num=None, num_heads=None, heads=None,
                  dropout=None, in_channels=2, out_channels=3):
    """Strided Transformer; canonical (num_frame, num_joints, num_heads) and released (frames,
    n_joints, heads) keyword spellings are both accepted. 243 frames is not in its table."""
    check_io_channels(in_channels, out_channels)
    num_joints = resolve_alias('num_joints', num_joints, n_joints, default=17)
    return StridedTransformer(
        num_frame=resolve_alias('num_frame', num_frame, frames, default=351), num_joints=num_joints,
        out_joints=out_joints or num_joints, layers=layers or 3, channel=channel or 256,
        d_hid=d_hid or 512, stride_num=stride_num,
        heads=resolve_alias('num_heads', num_heads, heads, default=8),
        dropout=0.1 if dropout is None else dropout)
