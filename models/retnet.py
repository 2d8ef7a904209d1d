"""PoseRetNet (RetMixSTE): spatial attention over joints alternating with multi-scale
retention over frames. One model holds the three forms of retention:

* parallel -- ``forward(x)``: x [B, T, J, 2] -> [B, T, J, 3] with a (chunked) decay mask;
* chunkwise -- ``predict_sequence(x)`` for sequences of any length (the official evaluation)
  and ``step_chunk`` for streaming one chunk at a time;
* recurrent -- ``step(x_t, state)`` for causal models, one frame at a time at constant cost.

The spatial part sees one frame at a time, so the retention is the only temporal mixing and
all three forms give the same numbers. Positions enter only through xPos and the decay, both
of which depend on frame differences alone; the carried state is therefore kept relative to
the next frame, which keeps it bounded on unbounded streams.
"""
import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.data.skeleton import layout_name
from models import register_model
from models.base import Lifter
from models.blocks import Block, Mlp, in_cache_sized_passes
from models.mixste import check_norm_layer, loss_joint_weights, pick_width, poseretnet_loss

# Per-joint decay dividers d_j (larger -> slower decay -> longer memory), in each joint layout's order.
JOINT_DECAY_DIVIDERS = {
    'h36m_17': (4, 4, 1, 1, 4, 1, 1, 4, 4, 4, 2, 2, 0.5, 0.5, 2, 0.5, 0.5),
    'mpii3d_univ_17': (1.5, 1.5, 2, 1, 0.5, 2, 1, 0.5, 2, 1, 0.5, 2, 1, 0.5, 2, 2, 1.5),
    'mpii3d_14': (0.5, 1, 2, 2, 1, 0.5, 0.5, 1, 2, 2, 1, 0.5, 1.5, 1.5),
}
XPOS_SCALE_BASE = 512
EVAL_SEGMENT_FRAMES = 243  # frames per step of the chunkwise sequence evaluation (rounded to chunks)


def decay_rates(num_heads, gamma_divider, dividers=None):
    """Retention decay per head: [H, J] (per joint) or [H]; float32 like the release.

    gamma[h, j] = 1 - exp(linspace(log(1 / (d_j g)), log(1 / (16 d_j g)), H)[h])."""
    dividers = (1,) if dividers is None else dividers
    rates = torch.stack([1 - torch.exp(torch.linspace(math.log(1 / (d * gamma_divider)),
                                                      math.log(1 / (d * gamma_divider * 16)), num_heads))
                         for d in dividers], 1)
    return rates if len(dividers) > 1 else rates[:, 0]


class XPos(nn.Module):
    """xPos amplitude bases s [head_dim / 2] (a stored buffer of the official files)."""

    def __init__(self, head_dim):
        super().__init__()
        self.register_buffer('scale', (torch.arange(0, head_dim, 2) + 0.4 * head_dim) / (1.4 * head_dim))


class RetentionHead(nn.Module):
    """Parameters of one retention head: decay ``gamma`` [J] (or scalar) and the raw
    projections W_Q, W_K, W_V [C, head_dim] applied as ``x @ W``."""

    def __init__(self, dim, head_dim, gamma, trainable=False):
        super().__init__()
        self.gamma = nn.Parameter(gamma.clone().float(), requires_grad=trainable)
        self.W_Q = nn.Parameter(torch.randn(dim, head_dim) / dim)
        self.W_K = nn.Parameter(torch.randn(dim, head_dim) / dim)
        self.W_V = nn.Parameter(torch.randn(dim, head_dim) / dim)
        self.xpos = XPos(head_dim)


class RetentionTables(NamedTuple):
    """Position and decay constants of one segment of L frames ([J'] = joints or 1)."""
    rotate_q: torch.Tensor     # [H, L, d/2] complex: xPos rotation x amplitude s^(p/512) for queries
    rotate_k: torch.Tensor     # [H, L, d/2] complex: same with amplitude s^(-p/512), for keys
    shift_keys: torch.Tensor   # [H, 1, d/2] complex: moves stored keys L frames into the past
    decay: torch.Tensor        # [J', H, L, L] decay mask inside the segment
    cross: torch.Tensor        # [J', H, L, 1] gamma^(t+1): decay of the carried state
    value_decay: torch.Tensor  # [J', H, L, 1] gamma^(L-1-t): decay until the segment's end
    total_decay: torch.Tensor  # [J', H, 1, 1] gamma^L


def tracing() -> bool:
    """Inside torch.compile / torch.export / torch.jit.trace: no data pointers, no complex views."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _rotate(x, rotation):
    """xPos on the last axis: interleaved pair i (x0, x1) as a complex number times
    rotation[..., i], i.e. (x0 c - x1 s, x1 c + x0 s). x [..., L, d] -> contiguous [..., L, d]."""
    if tracing():  # the same product in real pairs
        pair, turn = x.unflatten(-1, (-1, 2)), torch.view_as_real(rotation)
        x0, x1, c, s = pair[..., 0], pair[..., 1], turn[..., 0], turn[..., 1]
        return torch.stack((x0 * c - x1 * s, x1 * c + x0 * s), -1).flatten(-2)
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(st % 2 for st in x.stride()[:-1]):
        x = x.contiguous()  # the complex view needs even strides
    return torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * rotation).flatten(-2)


def _shift_keys_(state, rotation):
    """Apply a key rotation, in place, to the key axis (the last one, in pairs) of a
    contiguous state [..., d_v, d_k]; returns the state."""
    if tracing():
        return _rotate(state, rotation)
    torch.view_as_complex(state.unflatten(-1, (-1, 2))).mul_(rotation)
    return state


class MultiScaleRetention(nn.Module):
    """Multi-scale retention over frames, heads fused into single matmuls.

    x [B, L, J, C] -> [B, L, J, C]: Y_h = ((Q K^T) * D) V + (Q S) * gamma^(t+1), per-head
    GroupNorm, then (swish(x W_G) * Y) W_O. The state carried from earlier frames is stored
    transposed, S^T = sum_t gamma^(..) V_t^T K_t [B, J, H, d_v, d_k] (None = no history), so
    that its key pairs sit on the last axis."""

    def __init__(self, dim, num_heads, gammas, chunk_size, causal, trainable, table_cache, cache_size=24):
        super().__init__()
        self.num_heads, self.chunk_size, self.causal = num_heads, chunk_size, causal
        self.W_G = nn.Parameter(torch.randn(dim, dim) / dim)
        self.W_O = nn.Parameter(torch.randn(dim, dim) / dim)
        self.group_norm = nn.GroupNorm(num_heads, dim)
        self.retentions = nn.ModuleList(RetentionHead(dim, dim // num_heads, g, trainable) for g in gammas)
        self._table_cache = table_cache  # shared by all layers: equal decays share their masks
        self._cache_size = cache_size     # bounded: the last segment of every sequence has its own length
        self._weight_cache = (None, None)
        self._fingerprint = (None, None)
        self._traced_tables = {}  # length -> tables of the latest eager passes (see tables())

    def _decay_constants(self):
        gamma = torch.stack([head.gamma for head in self.retentions])   # [H, J] or [H]
        scale = torch.stack([head.xpos.scale for head in self.retentions])
        return gamma.reshape(self.num_heads, -1).transpose(0, 1), scale  # [J', H], [H, d/2]

    def _build_tables(self, length):
        gamma, scale = self._decay_constants()
        dtype, device = gamma.dtype, gamma.device
        half = scale.shape[-1]
        pos = torch.arange(length, device=device, dtype=dtype)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, half, device=device, dtype=dtype) / half))
        angle = pos[:, None] * inv_freq                                 # [L, d/2]
        amp = scale[:, None, :] ** (pos / XPOS_SCALE_BASE)[:, None]      # [H, L, d/2]
        phase = torch.polar(torch.ones_like(angle), angle)             # e^(i angle)
        shift = torch.polar(scale ** (length / XPOS_SCALE_BASE), -float(length) * inv_freq)
        frames = torch.arange(length, device=device)
        if self.causal:
            visible = frames[:, None] >= frames[None, :]
        else:  # free look-ahead up to the end of the own chunk, all earlier frames visible
            visible = frames[None, :] // self.chunk_size <= frames[:, None] // self.chunk_size
        distance = (frames[:, None] - frames[None, :]).abs().to(dtype)
        g = gamma[..., None, None]
        decay = torch.where(visible, g ** distance, torch.zeros((), dtype=dtype, device=device))
        return RetentionTables(
            phase * amp, phase * (1 / amp), shift[:, None], decay,
            (g[..., 0] ** (pos + 1))[..., None], (g[..., 0] ** (length - 1 - pos))[..., None], g ** length)

    def tables(self, length):
        """Cached RetentionTables for a segment of ``length`` frames (rebuilt when the decays change)."""
        if tracing():  # constants of the graph: the tables of the eager pass before it
            length = int(length)
            if length not in self._traced_tables:
                raise RuntimeError(f'run the model once on {length} frames before tracing or exporting it')
            return self._traced_tables[length]
        gamma_params = [head.gamma for head in self.retentions]
        if torch.is_grad_enabled() and any(p.requires_grad for p in gamma_params):
            return self._build_tables(length)  # trainable decay: keep the graph, no cache
        tensors = gamma_params + [head.xpos.scale for head in self.retentions]
        versions = tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in tensors)
        if self._fingerprint[0] != versions:  # once per load / move, not per forward
            content = torch.cat([t.detach().flatten().double() for t in tensors]).cpu().numpy().tobytes()
            self._fingerprint = (versions, content)
        key = (self._fingerprint[1], versions[0][2:], length, self.chunk_size, self.causal)
        if key not in self._table_cache:
            if len(self._table_cache) >= self._cache_size:
                del self._table_cache[next(iter(self._table_cache))]  # oldest first
            with torch.no_grad():
                self._table_cache[key] = self._build_tables(length)
        self._traced_tables = {**dict(list(self._traced_tables.items())[-3:]), length: self._table_cache[key]}
        return self._table_cache[key]

    def fused_weight(self):
        """[C, 4C] = [W_Q of all heads | W_K ... | W_V ... | W_G], cached for inference."""
        params = ([h.W_Q for h in self.retentions] + [h.W_K for h in self.retentions]
                  + [h.W_V for h in self.retentions] + [self.W_G])
        if torch.is_grad_enabled() or tracing():
            return torch.cat(params, 1)
        versions = tuple((p._version, p.data_ptr()) for p in params)
        if self._weight_cache[0] != versions:
            self._weight_cache = (versions, torch.cat(params, 1))
        return self._weight_cache[1]

    def forward(self, x, state=None, keep_state=False):
        """x [B, L, J, C]; state [B, J, H, d, d] or None -> (y [B, L, J, C], new state or None).

        The new state holds this segment's keys and values relative to the frame after it."""
        batch, length, joints, dim = x.shape
        heads = self.num_heads
        t = self.tables(length)
        q, k, v, gate = (x @ self.fused_weight()).split(dim, -1)

        def split_heads(z):  # [B, L, J, C] -> [B, J, H, L, d]
            return z.reshape(batch, length, joints, heads, -1).permute(0, 2, 3, 1, 4)
        q = _rotate(split_heads(q), t.rotate_q)
        k = _rotate(split_heads(k), t.rotate_k)
        v = split_heads(v)
        y = (q @ k.transpose(-1, -2)).mul_(t.decay) @ v                # [B, J, H, L, d]
        if state is not None:
            y = y.add_((q @ state.transpose(-1, -2)).mul_(t.cross))
        new_state = None
        if keep_state:  # updated in place: the state is the largest tensor of a streaming step
            new_state = (v * t.value_decay).transpose(-1, -2) @ k
            if state is not None:
                new_state.addcmul_(state, t.total_decay)
            new_state = _shift_keys_(new_state, t.shift_keys)
        y = y.permute(0, 3, 1, 2, 4).reshape(-1, dim)                   # [(B L J), C]
        y = F.group_norm(y, heads, self.group_norm.weight, self.group_norm.bias, self.group_norm.eps)
        return y.view(batch, length, joints, dim).mul_(F.silu(gate)) @ self.W_O, new_state


class RetentionBlock(nn.Module):
    """Pre-norm block over frames: x + MSR(norm1(x)), x + MLP(norm2(x)); x [B, L, J, C].
    Stochastic depth drops whole (sample, joint) sequences, as the release does."""

    def __init__(self, dim, num_heads, mlp_ratio, drop, drop_path, retention_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleRetention(dim, num_heads, **retention_kwargs)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = drop_path

    def _drop(self, y):
        if not self.training or self.drop_path == 0:
            return y
        keep = 1 - self.drop_path
        return y * y.new_empty(y.shape[0], 1, y.shape[2], 1).bernoulli_(keep) / keep

    def forward(self, x, state=None, keep_state=False):
        y, state = self.attn(self.norm1(x), state, keep_state)
        x = x + self._drop(y)
        return x + self._drop(self.mlp(self.norm2(x))), state


class RetMixSTE(Lifter):
    """PoseRetNet lifter. x [B, T, J, 2] -> [B, T, J, 3].

    num_frame -- training clip length (243); receptive field of ``forward``
    embed_dim -- width C (512); depth -- spatial/temporal block pairs (8); num_heads (8)
    chunk_size -- frames per chunk (243): a frame sees every earlier frame and the rest of its chunk
    causal -- decay mask over past frames only (enables the per-frame ``step``)
    joint_related -- one decay per joint from ``layout``'s table ('h36m_17', 'mpii3d_univ_17', 'mpii3d_14')
    gamma_divider -- decay scale g (8); trainable -- learn the decays
    train_mode -- 'parallel' or 'chunkwise' (training forward chunk by chunk, state detached)"""

    predicts = 'sequence'

    def __init__(self, num_frame=243, num_joints=17, in_chans=2, embed_dim=512, depth=8, num_heads=8,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.1, gamma_divider=8, joint_related=True, trainable=False,
                 chunk_size=243, causal=False, layout='h36m_17', train_mode='parallel'):
        super().__init__()
        if train_mode not in ('parallel', 'chunkwise'):
            raise ValueError(f"train_mode must be 'parallel' or 'chunkwise', not {train_mode!r}")
        dividers = None
        if joint_related:
            if layout not in JOINT_DECAY_DIVIDERS:
                raise ValueError(f"no joint decay table for layout {layout!r}; "
                                 f"choose one of {sorted(JOINT_DECAY_DIVIDERS)}")
            dividers = JOINT_DECAY_DIVIDERS[layout]
            if len(dividers) != num_joints:
                raise ValueError(f'layout {layout!r} has {len(dividers)} joints, not {num_joints}')
        self.receptive_field = num_frame
        self.chunk_size, self.causal, self.train_mode = chunk_size, causal, train_mode
        self.input_layout = self.output_layout = layout
        self.loss_weights = loss_joint_weights(layout, num_joints)
        self.Spatial_patch_to_embedding = nn.Linear(in_chans, embed_dim)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        path_rates = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()
        self.STEblocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, rate)
            for rate in path_rates)
        gammas = decay_rates(num_heads, gamma_divider, dividers)
        retention_kwargs = dict(gammas=gammas, chunk_size=chunk_size, causal=causal, trainable=trainable,
                                table_cache={}, cache_size=3 * depth)
        self.TTEblocks = nn.ModuleList(
            RetentionBlock(embed_dim, num_heads, mlp_ratio, drop_rate, rate, retention_kwargs)
            for rate in path_rates)
        self.Spatial_norm = nn.LayerNorm(embed_dim, eps=1e-6)   # one norm shared by all layers
        self.Temporal_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 3))

    def _run(self, x, states=None, keep_state=False):
        """All layers over one segment. x [B, L, J, 2] -> ([B, L, J, 3], per-layer states)."""
        batch, length, joints, _ = x.shape
        h = self.pos_drop(self.Spatial_patch_to_embedding(x) + self.Spatial_pos_embed)
        new_states = []
        for i, (spatial, temporal) in enumerate(zip(self.STEblocks, self.TTEblocks)):
            h = self.Spatial_norm(spatial(h.reshape(batch * length, joints, -1)))
            h = h.view(batch, length, joints, -1)
            if i == 0:
                h = self.pos_drop(h)
            h, state = temporal(h, None if states is None else states[i], keep_state)
            h = self.Temporal_norm(h)
            new_states.append(state)
        return self.head(h), new_states

    def _segmented(self, x, segment):
        """Segments of ``segment`` frames in order, carrying the retention state (detached)."""
        outputs, states = [], None
        for start in range(0, x.shape[1], segment):
            last = start + segment >= x.shape[1]
            out, states = self._run(x[:, start:start + segment], states, keep_state=not last)
            states = None if last else [s.detach() for s in states]
            outputs.append(out)
        return torch.cat(outputs, 1)

    def forward(self, x):
        """Parallel form. x [B, T, J, 2] -> [B, T, J, 3]."""
        if self.training and self.train_mode == 'chunkwise':
            return self._segmented(x, self.chunk_size)
        return in_cache_sized_passes(lambda part: self._run(part)[0], x)

    def training_loss(self, x, target):
        """The release's objective (see models.mixste.poseretnet_loss); target [B, T, J, 3]."""
        return poseretnet_loss(self(x), target, self.loss_weights)

    def eval_segment(self):
        """Frames per step of ``predict_sequence``: whole chunks, about EVAL_SEGMENT_FRAMES."""
        return self.chunk_size * max(1, EVAL_SEGMENT_FRAMES // self.chunk_size)

    def predict_sequence(self, x, max_batch=1024):
        """Chunkwise evaluation of whole sequences of any length T (the official evaluation:
        chunks from frame 0, the last one partial). x [B, T, J, 2] -> [B, T, J, 3]."""
        return self._segmented(x, self.eval_segment())

    def init_state(self, batch):
        """Empty history for ``step`` / ``step_chunk``: one [B, J, H, d, d] state per layer."""
        heads = self.TTEblocks[0].attn.num_heads
        joints, dim = self.Spatial_pos_embed.shape[1:]
        shape = (batch, joints, heads, dim // heads, dim // heads)
        return [self.Spatial_pos_embed.new_zeros(shape) for _ in self.TTEblocks]

    def step_chunk(self, x, state):
        """Streaming by chunks: x [B, L, J, 2] (L = chunk_size, or less for the last chunk of a
        non-causal model; any L when causal) -> ([B, L, J, 3], new state). Latency: one chunk."""
        if not self.causal and x.shape[1] > self.chunk_size:
            raise ValueError(f'a non-causal chunk holds at most {self.chunk_size} frames, got {x.shape[1]}')
        out, state = self._run(x, state, keep_state=True)
        return out, state

    def step(self, x, state):
        """Recurrent form, causal models: one frame x [B, J, 2] -> ([B, J, 3], new state);
        constant time and memory per frame."""
        if not self.causal:
            raise ValueError('per-frame steps need a causal model; use step_chunk for non-causal ones')
        out, state = self._run(x[:, None], state, keep_state=True)
        return out[:, 0], state


def detect_official(state_dict):
    """Constructor kwargs for an official RetMixSTE state dict (``module.`` stripped), else None."""
    if 'TTEblocks.0.attn.retentions.0.W_Q' not in state_dict or 'Spatial_pos_embed' not in state_dict:
        return None
    _, joints, dim = state_dict['Spatial_pos_embed'].shape
    depth = len({k.split('.')[1] for k in state_dict if k.startswith('TTEblocks.')})
    heads = len({k.split('.')[4] for k in state_dict if k.startswith('TTEblocks.0.attn.retentions.')})
    gamma = state_dict['TTEblocks.0.attn.retentions.0.gamma'].float()
    config = dict(num_joints=joints, embed_dim=dim, depth=depth, num_heads=heads,
                  mlp_ratio=state_dict['TTEblocks.0.mlp.fc1.weight'].shape[0] / dim,
                  joint_related=gamma.ndim == 1)
    # gamma of head 0 is 1 - 1 / (d_j g): the table d_j and g follow from the stored values
    if gamma.ndim == 1:
        candidates = [name for name, table in JOINT_DECAY_DIVIDERS.items() if len(table) == joints]
        best = None
        for name in candidates:
            dividers = torch.tensor(JOINT_DECAY_DIVIDERS[name])
            divider = (1 / ((1 - gamma) * dividers)).mean().round().item()
            error = (decay_rates(heads, divider, JOINT_DECAY_DIVIDERS[name])[0] - gamma).abs().max().item()
            if best is None or error < best[0]:
                best = (error, name, divider)
        if best is not None:
            config.update(layout=best[1], gamma_divider=int(best[2]))
    else:
        config['gamma_divider'] = int(round(1 / (1 - gamma.item())))
    return config


@register_model('retnet', aliases=('poseretnet', 'retmixste'), detect_official=detect_official, priority=10)
def build_retnet(num_frame=None, num_joints=17, in_chans=2, embed_dim_ratio=None, depth=8, num_heads=8,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.1, norm_layer=None, gamma_divider=8, joint_related=True, trainable=False,
                 chunk_size=None, causal=False, layout=None, dataset=None, embed_dim=None, dropout=None,
                 train_mode='parallel'):
    """RetMixSTE from the official constructor names (embed_dim_ratio, drop_rate, ...) or the
    command-line ones (embed_dim, dropout). Defaults are the published H3.6M model:
    C 512, depth 8, joint-related decay, non-causal, chunk 243, num_frame 243."""
    check_norm_layer(norm_layer)
    num_frame = num_frame or 243
    return RetMixSTE(num_frame, num_joints, in_chans, pick_width(embed_dim, embed_dim_ratio, 512), depth,
                     num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate if dropout is None else dropout,
                     attn_drop_rate, drop_path_rate, gamma_divider, joint_related, trainable,
                     chunk_size or 243, bool(causal), layout_name(layout, dataset), train_mode)
