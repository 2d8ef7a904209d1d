"""MixSTE (the MixSTE2 baseline of the PoseRetNet release): spatial attention over joints
alternating with attention over frames, seq2seq. x [B, T, J, 2] -> [B, T, J, 3].

Whole sequences are predicted by the engine's generic seq2seq windowing (consecutive windows
of num_frame frames, the last one ending at the last frame)."""
import torch
import torch.nn as nn

from common.data.skeleton import layout_name
from models import register_model
from models.base import Lifter
from models.blocks import Block, in_cache_sized_passes

# Per-joint weights of the release's training loss, in each joint layout's order.
LOSS_JOINT_WEIGHTS = {
    'h36m_17': (1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4),
    'mpii3d_univ_17': (1.5, 1.5, 1, 2.5, 4, 1, 2.5, 4, 1, 2.5, 4, 1, 2.5, 4, 1, 1, 1.5),
    'mpii3d_14': (4, 2.5, 1, 1, 2.5, 4, 4, 2.5, 1, 1, 2.5, 4, 1.5, 1.5),
}


def loss_joint_weights(layout, num_joints):
    """The release's per-joint loss weights for a joint ``layout``; all ones where it has none."""
    weights = LOSS_JOINT_WEIGHTS.get(layout, ())
    return weights if len(weights) == num_joints else (1.0,) * num_joints


def poseretnet_loss(predicted, target, joint_weights):
    """The PoseRetNet release's objective for its three models, [B, T, J, 3] each:
    joint-weighted MPJPE + 0.5 x joint-weighted squared frame difference of the prediction
    + 2 x mean velocity error (every frame valid). joint_weights -- J numbers."""
    weights = predicted.new_tensor(joint_weights)
    batch, frames, joints, _ = predicted.shape
    steps = batch * (frames - 1) * joints + 1e-6
    position = (weights * (predicted - target).norm(dim=-1)).sum() / (batch * frames * joints + 1e-6)
    smoothness = (weights[:, None] * predicted.diff(dim=1).square()).sum() / steps
    velocity = (predicted.diff(dim=1) - target.diff(dim=1)).norm(dim=-1).sum() / steps
    return position + 0.5 * smoothness + 2.0 * velocity


def pick_width(embed_dim, embed_dim_ratio, default):
    """The width C from either name (they mean the same); both given must agree."""
    if embed_dim is not None and embed_dim_ratio is not None and embed_dim != embed_dim_ratio:
        raise ValueError(f'embed_dim {embed_dim} and embed_dim_ratio {embed_dim_ratio} disagree')
    return embed_dim or embed_dim_ratio or default


def check_norm_layer(norm_layer):
    """The release builds every block norm as LayerNorm(eps=1e-6); only that is supported."""
    if norm_layer is not None and str(norm_layer).replace(' ', '') != 'LayerNorm(eps=1e-6)':
        raise ValueError(f'norm_layer {norm_layer!r} is not supported (blocks use LayerNorm(eps=1e-6))')


class MixSTE2(Lifter):
    """num_frame -- clip length F (243; the learned temporal embedding is [1, F, C])
    num_joints -- J (17); embed_dim -- width C (512); depth -- block pairs (8); num_heads (8)
    mlp_ratio -- MLP width / C (2); drop_rate, attn_drop_rate, drop_path_rate -- regularisation
    layout -- joint layout, picks the per-joint weights of ``training_loss``"""

    predicts = 'sequence'

    def __init__(self, num_frame=243, num_joints=17, in_chans=2, embed_dim=512, depth=8, num_heads=8,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.1, layout='h36m_17'):
        super().__init__()
        self.receptive_field = num_frame
        self.input_layout = self.output_layout = layout
        self.loss_weights = loss_joint_weights(layout, num_joints)
        self.Spatial_patch_to_embedding = nn.Linear(in_chans, embed_dim)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, embed_dim))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, num_frame, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        path_rates = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()

        def blocks():
            return nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                                       attn_drop_rate, rate) for rate in path_rates)
        self.STEblocks = blocks()
        self.TTEblocks = blocks()
        self.Spatial_norm = nn.LayerNorm(embed_dim, eps=1e-6)   # shared by all layers
        self.Temporal_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 3))

    def forward(self, x):
        """x [B, T, J, 2] with T <= num_frame -> [B, T, J, 3]."""
        return in_cache_sized_passes(self._forward, x)

    def _forward(self, x):
        batch, frames, joints, _ = x.shape
        if frames > self.receptive_field:
            raise ValueError(f'MixSTE2 takes at most {self.receptive_field} frames, got {frames}')
        h = self.pos_drop(self.Spatial_patch_to_embedding(x) + self.Spatial_pos_embed)
        h = h.reshape(batch * frames, joints, -1)                       # [(B T), J, C]
        for i, (spatial, temporal) in enumerate(zip(self.STEblocks, self.TTEblocks)):
            h = self.Spatial_norm(spatial(h))
            h = h.view(batch, frames, joints, -1).transpose(1, 2).reshape(batch * joints, frames, -1)
            if i == 0:  # the temporal embedding enters once, before the first temporal block
                h = self.pos_drop(h + self.Temporal_pos_embed[:, :frames])
            h = self.Temporal_norm(temporal(h))                         # [(B J), T, C]
            h = h.view(batch, joints, frames, -1).transpose(1, 2).reshape(batch * frames, joints, -1)
        return self.head(h).view(batch, frames, joints, 3)

    def training_loss(self, x, target):
        """The release's objective (see ``poseretnet_loss``); target [B, T, J, 3]."""
        return poseretnet_loss(self(x), target, self.loss_weights)


def detect_official(state_dict):
    """Constructor kwargs for an official MixSTE2 state dict (``module.`` stripped), else None."""
    if 'Temporal_pos_embed' not in state_dict or 'TTEblocks.0.attn.qkv.weight' not in state_dict:
        return None
    _, frames, dim = state_dict['Temporal_pos_embed'].shape
    return dict(num_frame=frames, num_joints=state_dict['Spatial_pos_embed'].shape[1], embed_dim=dim,
                depth=len({k.split('.')[1] for k in state_dict if k.startswith('TTEblocks.')}),
                mlp_ratio=state_dict['TTEblocks.0.mlp.fc1.weight'].shape[0] / dim)


@register_model('mixste', aliases=('mixste2',), detect_official=detect_official, priority=5)
def build_mixste(num_frame=None, num_joints=17, in_chans=2, embed_dim_ratio=None, depth=8, num_heads=8,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.1, norm_layer=None, embed_dim=None, dropout=None, layout=None, dataset=None):
    """MixSTE2 from the official constructor names or the command-line ones (embed_dim,
    dropout). Defaults are the PoseRetNet release's: C 512, depth 8; num_frame 243."""
    check_norm_layer(norm_layer)
    return MixSTE2(num_frame or 243, num_joints, in_chans, pick_width(embed_dim, embed_dim_ratio, 512), depth,
                   num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate if dropout is None else dropout,
                   attn_drop_rate, drop_path_rate, layout_name(layout, dataset))
