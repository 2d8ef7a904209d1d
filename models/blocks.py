"""Building blocks shared by the transformer lifters (timm-style names, so that
official state dicts map one to one): DropPath, Mlp, Attention, Block; and channels-last forms of
the kernel-1 Conv1d and BatchNorm1d that the convolutional checkpoints store."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample (training only).

    drop_prob -- probability of dropping a sample's branch (0.1)"""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """fc1 -> activation -> dropout -> fc2 -> dropout. [..., C] -> [..., C_out]"""

    def __init__(self, in_features, hidden_features=None, out_features=None,
                 act_layer=nn.GELU, drop=0.0, bias=True):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection ([q | k | v], head-major).

    Uses scaled_dot_product_attention (fused kernels on GPU). x [N, L, C] -> [N, L, C].
    dim -- width C; num_heads -- heads (8); qk_scale -- logit scale, default head_dim^-0.5"""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, attn_mask=None):
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale)
        x = x.transpose(1, 2).reshape(n, length, dim)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(norm1(x)), then x + Mlp(norm2(x))."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, act_layer=nn.GELU, norm_eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def pointwise(conv, x):
    """A kernel-1 Conv1d applied to channels-last x [..., C_in] -> [..., C_out]: one matrix
    product, no transposes (the weights keep their stored Conv1d shape)."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


def channels_last_norm(norm, x):
    """BatchNorm1d over channels-last x [..., C]; the statistics equal those over [B, C, T]."""
    return norm(x.reshape(-1, x.shape[-1])).view_as(x)


CPU_INFERENCE_TOKENS = 243 * 17  # frames x joints per forward pass when inferring on CPU


def in_cache_sized_passes(run, x):
    """``run(x)`` for x [B, T, J, C]; CPU inference goes in passes of at most CPU_INFERENCE_TOKENS
    frames x joints, since larger passes run the layout copies and norms of the joint/frame
    transformers out of cache (several times slower per frame). One pass otherwise."""
    per_pass = max(1, CPU_INFERENCE_TOKENS // (x.shape[1] * x.shape[2]))
    if x.device.type != 'cpu' or torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing() \
            or x.shape[0] <= per_pass:  # traced graphs (export) keep one pass: their batch is free
        return run(x)
    return torch.cat([run(part) for part in x.split(per_pass)])
