"""STCFormer (the STCModel baseline of the PoseRetNet release): each block splits the channels
in two halves, one attending across joints and one across frames, each with a depthwise 3x3
convolution over the (frame, joint) grid on its values. x [B, T, J, 2] -> [B, T, J, 3].

Whole sequences are evaluated as the release does: every frame gets its own window of
num_frame frames taken every 3rd frame around it, and only the window's middle is kept."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.data.skeleton import layout_name
from models import register_model
from models.base import Lifter
from models.blocks import DropPath, Mlp, in_cache_sized_passes
from models.mixste import loss_joint_weights, pick_width, poseretnet_loss

# Body part of every H3.6M joint (torso, right leg, left leg, left arm, right arm).
BODY_PARTS_H36M = (0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 4, 4, 4)
EVAL_STRIDE = 3  # frame step inside each evaluation window


class STCAttention(nn.Module):
    """Joint attention on channels [0, C/2), frame attention on [C/2, C), residual included.

    x [B, T, J, C] -> [B, T, J, C]. The qkv projection's output is interleaved per channel
    (3c: q_c, 3c+1: k_c, 3c+2: v_c); logits are scaled by (C/2)^-0.5 for every head."""

    def __init__(self, dim, num_heads=8, qk_scale=None):
        super().__init__()
        half = dim // 2
        self.qkv = nn.Linear(dim, dim * 3)
        self.layer_norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.emb = nn.Embedding(len(set(BODY_PARTS_H36M)), half // num_heads)
        self.sep2_t = nn.Conv2d(half, half, 3, padding=1, groups=half)
        self.sep2_s = nn.Conv2d(half, half, 3, padding=1, groups=half)
        self.register_buffer('part', torch.tensor(BODY_PARTS_H36M), persistent=False)
        self.num_heads, self.scale = num_heads, qk_scale or half ** -0.5
        self.part_drop = DropPath(0.5)
        self._weight_cache = (None, None)

    def qkv_planar(self):
        """qkv weight and bias reordered to [q | k | v] (cached for inference)."""
        weight, bias = self.qkv.weight, self.qkv.bias
        if torch.is_grad_enabled():
            return self._reorder(weight, bias)
        versions = (weight._version, bias._version, weight.data_ptr(), bias.data_ptr())
        if self._weight_cache[0] != versions:
            self._weight_cache = (versions, self._reorder(weight, bias))
        return self._weight_cache[1]

    @staticmethod
    def _reorder(weight, bias):
        dim = weight.shape[1]
        return weight.view(dim, 3, dim).transpose(0, 1).reshape(3 * dim, dim), bias.view(dim, 3).t().reshape(-1)

    def _conv(self, conv, v):
        """Depthwise 3x3 over (frame, joint): v [B, T, J, C/2] -> [B, T, J, C/2]."""
        grid = v.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        return conv(grid).permute(0, 2, 3, 1)

    def forward(self, x):
        batch, frames, joints, dim = x.shape
        heads, half = self.num_heads, dim // 2
        q, k, v = F.linear(self.layer_norm(x), *self.qkv_planar()).split(dim, -1)
        part_s = part_t = self.emb(self.part)[:, None]                  # [J, 1, C/2/H]
        if self.training:  # the release drops each branch's whole part embedding at random
            part_s, part_t = self.part_drop(part_s[None])[0], self.part_drop(part_t[None])[0]

        def joint_heads(z):  # [B, T, J, C/2] -> [(B T), H, J, d] (a view)
            return z.flatten(0, 1).unflatten(-1, (heads, -1)).transpose(1, 2)

        def frame_heads(z):  # [B, T, J, C/2] -> [(B J), H, T, d]
            return z.unflatten(-1, (heads, -1)).permute(0, 2, 3, 1, 4).flatten(0, 1)
        # 4-D inputs keep scaled_dot_product_attention on its fused kernels
        x_s = F.scaled_dot_product_attention(*(joint_heads(z[..., :half]) for z in (q, k, v)), scale=self.scale)
        x_t = F.scaled_dot_product_attention(*(frame_heads(z[..., half:]) for z in (q, k, v)), scale=self.scale)
        x_s = x_s.transpose(1, 2).view(batch, frames, joints, heads, -1) \
            + self._conv(self.sep2_s, v[..., :half]).unflatten(-1, (heads, -1)) + 1e-4 * part_s
        x_t = x_t.view(batch, joints, heads, frames, -1).permute(0, 3, 1, 2, 4) \
            + self._conv(self.sep2_t, v[..., half:]).unflatten(-1, (heads, -1)) + 1e-9 * part_t
        # per head: joint half then frame half
        out = torch.cat((x_s, x_t), -1).reshape(batch, frames, joints, dim)
        return self.proj(out) + x


class STCBlock(nn.Module):
    """STC attention (with its residual) then x + MLP(LayerNorm(x)); MLP 4C wide, no biases."""

    def __init__(self, dim, num_heads, qk_scale, drop, drop_path):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 4, drop=drop, bias=False)
        self.stc_att = STCAttention(dim, num_heads, qk_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = self.stc_att(x)
        return x + self.drop_path(self.mlp(self.layer_norm(x)))


class STCModel(Lifter):
    """num_frame -- clip length F (243); num_joints -- 17 (the body-part table is H3.6M's)
    embed_dim -- width C (256); depth -- blocks (6); num_heads -- per half (8)
    drop_rate -- MLP dropout (0.1 in the release); drop_path_rate -- stochastic depth (0)
    layout -- joint layout, picks the per-joint weights of ``training_loss``"""

    predicts = 'sequence'

    def __init__(self, num_frame=243, num_joints=17, in_chans=2, embed_dim=256, depth=6, num_heads=8,
                 qk_scale=None, drop_rate=0.1, drop_path_rate=0.0, layout='h36m_17', max_batch=256):
        super().__init__()
        if num_joints != len(BODY_PARTS_H36M):
            raise ValueError(f'STCModel needs {len(BODY_PARTS_H36M)} joints (its body-part table), got {num_joints}')
        self.receptive_field, self.max_batch = num_frame, max_batch
        self.input_layout = self.output_layout = layout
        self.loss_weights = loss_joint_weights(layout, num_joints)
        self.pose_emb = nn.Linear(in_chans, embed_dim, bias=False)
        self.stcformer = nn.Module()
        self.stcformer.stc_block = nn.ModuleList(
            STCBlock(embed_dim, num_heads, qk_scale, drop_rate, drop_path_rate) for _ in range(depth))
        self.regress_head = nn.Linear(embed_dim, 3, bias=False)

    def forward(self, x):
        """x [B, T, J, 2] -> [B, T, J, 3]."""
        return in_cache_sized_passes(self._forward, x)

    def _forward(self, x):
        h = F.gelu(self.pose_emb(x))
        for block in self.stcformer.stc_block:
            h = block(h)
        return self.regress_head(h)

    def training_loss(self, x, target):
        """The release's objective (see models.mixste.poseretnet_loss); target [B, T, J, 3]."""
        return poseretnet_loss(self(x), target, self.loss_weights)

    def predict_sequence(self, x, max_batch=1024):
        """The release's evaluation: for every frame t a window of F frames t - 3(F-1)/2 ...
        t + 3(F-1)/2 every 3rd frame (edge frames repeated), middle prediction kept.
        x [B, T, J, 2] -> [B, T, J, 3]."""
        from models.windows import centre_windows
        batch, frames = x.shape[:2]
        windows = centre_windows(x, self.receptive_field, EVAL_STRIDE)   # [B*T, F, J, 2]
        middle = (self.receptive_field - 1) // 2
        out = torch.cat([self(chunk)[:, middle] for chunk in windows.split(self.max_batch)])
        return out.view(batch, frames, *out.shape[1:])


def detect_official(state_dict):
    """Constructor kwargs for an official STCModel state dict (``module.`` stripped), else None."""
    if 'stcformer.stc_block.0.stc_att.qkv.weight' not in state_dict:
        return None
    return dict(embed_dim=state_dict['pose_emb.weight'].shape[0],
                depth=len({k.split('.')[2] for k in state_dict if k.startswith('stcformer.stc_block.')}))


@register_model('stc', aliases=('stcformer',), detect_official=detect_official, priority=5)
def build_stc(num_frame=None, num_joints=17, in_chans=2, embed_dim_ratio=None, depth=6, num_heads=8,
              mlp_ratio=None, qkv_bias=True, qk_scale=None, drop_rate=None, attn_drop_rate=0.0,
              drop_path_rate=0.0, embed_dim=None, dropout=None, layout=None, dataset=None):
    """STCModel from the official constructor names or the command-line ones. Defaults are the
    release's (C 256, depth 6, num_frame 243). As in the release, the MLP is always 4C wide
    (mlp_ratio is accepted for the shared signature and not used), qkv always has a bias and
    attention dropout is not used."""
    if not qkv_bias:
        raise ValueError('STCModel always has a qkv bias')
    del mlp_ratio, attn_drop_rate
    drop = dropout if dropout is not None else drop_rate
    return STCModel(num_frame or 243, num_joints, in_chans, pick_width(embed_dim, embed_dim_ratio, 256), depth,
                    num_heads, qk_scale, 0.1 if drop is None else drop, drop_path_rate, layout_name(layout, dataset))
