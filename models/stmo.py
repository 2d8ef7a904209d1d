"""P-STMO (Shan et al., ECCV 2022) and APTPose (BMVC 2024): one model class, variants as flags.

* P-STMO fine-tune: per-frame FCBlock encoder -> temporal encoder -> strided encoder (centre
  frame) plus an all-frame auxiliary head (blocks from models/strided.py).
* ``pretrain``: masked pretraining (MAE) with the SAME encoder definition: joints of each frame
  are replaced by a learned token, whole frames are hidden from the temporal encoder, and a
  narrow decoder rebuilds the 2D input of every frame.
* ``hierarchical`` (APTPose): four FCBlock encoders, each fed a copy of the input with its own
  anatomy-aware mask (random joints, one bone, one limb, one body side) replaced by its own
  token; their features are multiplied; two extra heads predict bone vectors.

Random masks are drawn only when training (and in pretraining, where they are the objective).
APTPose's released evaluation also draws random bone / limb / side masks for every test batch;
here evaluation is deterministic: an APTPose fine-tune model in eval mode masks nothing.
"""
import torch
import torch.nn as nn

from common.errors import UserError
from common.eval.metrics import mpjpe
from common.data.skeleton import LAYOUTS, layout_name
from models import register_model
from models.strided import (CentreFrameLifter, PoseLayerNorm, TemporalEncoder, centre_and_sequence_loss,
                            channels_last_norm, check_io_channels, pointwise, pose_head,
                            resolve_alias, run_head, strides_for, transformer_config)

__all__ = ['STMO', 'FCBlock', 'bone_vectors', 'STMO_STRIDES']

# Frames -> strides of the strided encoder (P-STMO / APTPose release).
STMO_STRIDES = {9: [1, 3, 3], 27: [3, 3, 3], 81: [3, 3, 3, 3], 243: [3, 3, 3, 3, 3], 351: [3, 9, 13]}
# APTPose's bones (parent, child); used for bone masks and bone-vector targets on 17 joints.
BONES_17 = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
            (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16))
APTPOSE_LAYOUTS = ('h36m_17', 'mpii3d_univ_17')  # its limb and side masks use their left/right joints
MASK_NAMES = ('spatial_mask', 'bone_mask', 'limb_mask1', 'limb_mask2')  # encoder1..4
BONE_LOSS_WEIGHT = 0.5  # APTPose: weight of each bone-vector term (pose terms weigh 1)


class ResidualBlock(nn.Module):
    """Two (Conv1d k1, BN, LeakyReLU 0.2, Dropout) stages plus the input, on channels-last
    features. [B, F, C] -> [B, F, C]"""

    def __init__(self, width, dropout=0.1):
        super().__init__()
        self.w1, self.batch_norm1 = nn.Conv1d(width, width, 1), nn.BatchNorm1d(width)
        self.w2, self.batch_norm2 = nn.Conv1d(width, width, 1), nn.BatchNorm1d(width)
        self.act = nn.Sequential(nn.LeakyReLU(0.2), nn.Dropout(dropout))

    def forward(self, x):
        y = self.act(channels_last_norm(self.batch_norm1, pointwise(self.w1, x)))
        return x + self.act(channels_last_norm(self.batch_norm2, pointwise(self.w2, y)))


class FCBlock(nn.Module):
    """Per-frame MLP stored as 1x1 convolutions: Conv1d(C_in, W) + BN + LeakyReLU(0.2) + Dropout,
    ``blocks`` residual blocks, Conv1d(W, C_out); run channels-last. [B, F, C_in] -> [B, F, C_out]"""

    def __init__(self, channel_in, channel_out, width, blocks=1, dropout=0.1):
        super().__init__()
        self.fc_1, self.bn_1 = nn.Conv1d(channel_in, width, 1), nn.BatchNorm1d(width)
        self.act = nn.Sequential(nn.LeakyReLU(0.2), nn.Dropout(dropout))
        self.layers = nn.ModuleList(ResidualBlock(width, dropout) for _ in range(blocks))
        self.fc_2 = nn.Conv1d(width, channel_out, 1)

    def forward(self, x):
        x = self.act(channels_last_norm(self.bn_1, pointwise(self.fc_1, x)))
        for layer in self.layers:
            x = layer(x)
        return pointwise(self.fc_2, x)


def bone_vectors(pose):
    """pose [B, T, 17, 3] -> bone vectors parent - child [B, T, 16, 3] (APTPose's sign)."""
    parents, children = zip(*BONES_17)
    return pose[:, :, list(parents)] - pose[:, :, list(children)]


def _draw_groups(num_frame, num_joints, groups, count, device):
    """Per frame, ``count`` distinct groups (rows of ``groups`` [G, k]) marked True. -> [F, J] bool"""
    groups = torch.as_tensor(groups, device=device)
    pick = torch.rand(num_frame, groups.shape[0], device=device).argsort(-1)[:, :count]
    joints = groups[pick].reshape(num_frame, -1)
    return torch.zeros(num_frame, num_joints, dtype=torch.bool, device=device).scatter_(1, joints, True)


def draw_temporal_mask(num_frame, rate, device=None):
    """[F] bool with exactly int(F * rate) frames hidden (True), in random places."""
    hidden = torch.randperm(num_frame, device=device)[:int(num_frame * rate)]
    return torch.zeros(num_frame, dtype=torch.bool, device=device).index_fill_(0, hidden, True)


class STMO(CentreFrameLifter):
    """P-STMO / APTPose lifter. forward(x [B, F, J, 2]) -> centre pose [B, 1, J, 3]; with
    ``pretrain``: -> 2D reconstruction [B, F, J, 2] under freshly drawn masks, frames ordered
    visible first, then hidden (both ascending), as the released loss compares them.

    num_frame -- F (243); num_joints / out_joints -- 17; layers -- temporal depth (3 P-STMO-S,
    4 P-STMO); channel -- C (256); d_hid -- feed-forward width (512); stride_num -- from
    STMO_STRIDES; pretrain -- MAE variant; temporal_mask_rate -- hidden fraction of frames;
    spatial_mask_num -- joints replaced per frame, drawn among 0..J-2; hierarchical -- APTPose;
    mask_tokens -- APTPose's learned mask tokens (its 3DHP fine-tune class has none);
    sem_layers -- residual blocks per APTPose encoder (1); bone_mask_num -- bones masked per
    frame (1); layout -- joint layout; its left/right joints give the limb and side masks."""

    def __init__(self, num_frame=243, num_joints=17, out_joints=17, layers=3, channel=256, d_hid=512,
                 stride_num=None, heads=8, dropout=0.1, pretrain=False, temporal_mask_rate=0.8,
                 spatial_mask_num=2, hierarchical=False, mask_tokens=True, sem_layers=1,
                 bone_mask_num=1, layout='h36m_17'):
        if not pretrain:
            stride_num = stride_num or strides_for(num_frame, STMO_STRIDES, 'P-STMO')
        super().__init__(num_frame, out_joints, layers, channel, d_hid, stride_num, heads, dropout,
                         strided=not pretrain)
        if hierarchical and num_joints != 17:
            raise ValueError('APTPose masks and bone vectors are defined for 17 joints')
        self.is_pretraining, self.hierarchical = pretrain, hierarchical
        self.num_joints, self.temporal_mask_rate = num_joints, temporal_mask_rate
        self.spatial_mask_num, self.bone_mask_num = spatial_mask_num, bone_mask_num
        self.input_layout = self.output_layout = layout
        left, right = LAYOUTS[layout].flip_pairs
        self.limbs, self.sides = [left[:3], left[3:], right[:3], right[3:]], [left, right]
        if hierarchical:
            for i in range(1, len(MASK_NAMES) + 1):
                setattr(self, f'encoder{i}', FCBlock(2 * num_joints, channel, 2 * channel, sem_layers))
            self.mask_names = MASK_NAMES if (mask_tokens or pretrain) else ()
            if not pretrain:
                self.fcn_vec = pose_head(channel, 3 * (out_joints - 1))
                self.fcn_vec1 = pose_head(channel, 3 * (out_joints - 1))
        else:
            self.encoder = FCBlock(2 * num_joints, channel, 2 * channel, 1)
            self.mask_names = MASK_NAMES[:1] if pretrain else ()
        for name in self.mask_names:
            setattr(self, f'{name}_token', nn.Parameter(torch.randn(1, 1, 2)))
        if pretrain:
            half = channel // 2
            self.Transformer_dec = TemporalEncoder(layers - 1, half, d_hid // 2, num_frame, heads,
                                                   dropout, positional=False)
            self.encoder_to_decoder = nn.Linear(channel, half, bias=False)
            self.encoder_LN = PoseLayerNorm(channel)
            self.fcn_dec = pose_head(half, 2 * out_joints)
            self.dec_pos_embedding = nn.Parameter(torch.randn(1, num_frame, half))
            self.mask_token = nn.Parameter(torch.randn(1, 1, half))

    # ---- masks -------------------------------------------------------------------------------
    def draw_masks(self, num_frame, device=None):
        """Random joint masks of the released training loops: {name: [F, J] bool}."""
        masks = {}
        if 'spatial_mask' in self.mask_names:
            masks['spatial_mask'] = _draw_groups(num_frame, self.num_joints,
                                                 [[j] for j in range(self.num_joints - 1)],
                                                 self.spatial_mask_num, device)
        if self.hierarchical and self.mask_names:
            masks['bone_mask'] = _draw_groups(num_frame, self.num_joints, BONES_17,
                                              self.bone_mask_num, device)
            masks['limb_mask1'] = _draw_groups(num_frame, self.num_joints, self.limbs, 1, device)
            masks['limb_mask2'] = _draw_groups(num_frame, self.num_joints, self.sides, 1, device)
        return masks

    def _masked_copy(self, x, masks, name):
        mask = masks.get(name) if masks else None
        if mask is None or name not in self.mask_names:
            return x
        mask = torch.as_tensor(mask, device=x.device, dtype=torch.bool)
        return torch.where(mask[None, :, :, None], getattr(self, f'{name}_token'), x)

    def embed(self, x, masks=None):
        """x [B, F, J, 2], masks {name: [F, J] bool (True = replaced by the token)} -> [B, F, C]"""
        if not self.hierarchical:
            return self.encoder(self._masked_copy(x, masks, 'spatial_mask').flatten(2))
        f1, f2, f3, f4 = (getattr(self, f'encoder{i + 1}')(self._masked_copy(x, masks, name).flatten(2))
                          for i, name in enumerate(MASK_NAMES))
        return f4 * f3 * f2 * f1

    # ---- fine-tuning -------------------------------------------------------------------------
    def forward_all(self, x, masks=None):
        """x [B, F, J, 2] -> (centre pose [B, 1, J, 3], poses [B, F, J, 3]) and, for APTPose,
        (centre bones [B, 1, J-1, 3], bones [B, F, J-1, 3]). masks: explicit joint masks;
        unset -> random ones while training, none in eval mode."""
        if masks is None and self.training and self.mask_names:
            masks = self.draw_masks(x.shape[1], x.device)
        centre, sequence = self.temporal(self.embed(x, masks))
        joints = self.out_joints
        outputs = (run_head(self.fcn, centre, joints), run_head(self.fcn_1, sequence, joints))
        if self.hierarchical:
            outputs += (run_head(self.fcn_vec, centre, joints - 1), run_head(self.fcn_vec1, sequence, joints - 1))
        return outputs

    def forward_both(self, x):
        """x [B, F, J, 2] -> (centre pose [B, 1, J, 3], poses [B, F, J, 3])"""
        return self.forward_all(x)[:2]

    def convert_official_state_dict(self, state_dict):
        """Official files load as they are; an APTPose stage II file without mask tokens is the
        release's MPI-INF-3DHP class, which this model (built with them) cannot hold."""
        tokens = [f'{name}_token' for name in self.mask_names]
        if self.hierarchical and tokens and not any(k in state_dict for k in tokens):
            raise UserError("this APTPose checkpoint has no mask tokens: it is the release's MPI-INF-3DHP "
                            "class; build it with build_model('aptpose', ..., layout='mpii3d_univ_17') "
                            "(or dataset='mpii3d_univ', or mask_tokens=False)")
        return state_dict

    def forward(self, x):
        if self.is_pretraining:
            masks = self.draw_masks(x.shape[1], x.device)
            mask = draw_temporal_mask(x.shape[1], self.temporal_mask_rate, x.device)
            return self._reconstruct(x, mask, int(x.shape[1] * self.temporal_mask_rate), masks)[0]
        return self.forward_all(x)[0]

    def training_loss(self, x, target=None):
        """Released objectives. Fine-tune: MPJPE(all frames) + MPJPE(centre) against the
        root-relative target; APTPose adds 0.5 x MPJPE of the bone vectors (all frames, centre) of
        that target (the released loader keeps the camera-frame root in joint 0 there, which only
        changes the bones that start at the root). Pretraining: mean 2D distance between the
        reconstruction and the input frames reordered visible-then-hidden; ``target`` is not used.
        x [B, F, J, 2], target [B, F, J, 3] -> scalar"""
        if self.is_pretraining:
            mask = draw_temporal_mask(x.shape[1], self.temporal_mask_rate, x.device)
            masks = self.draw_masks(x.shape[1], x.device)
            recon, order = self._reconstruct(x, mask, int(x.shape[1] * self.temporal_mask_rate), masks)
            return mpjpe(recon, x[:, order])
        outputs = self.forward_all(x)
        loss = centre_and_sequence_loss(outputs[0], outputs[1], target)
        if self.hierarchical:
            bones = bone_vectors(target)
            pad = (target.shape[1] - 1) // 2
            loss = loss + BONE_LOSS_WEIGHT * (mpjpe(outputs[3], bones)
                                              + mpjpe(outputs[2], bones[:, pad:pad + 1]))
        return loss

    # ---- masked pretraining ------------------------------------------------------------------
    def reconstruct(self, x, mask, spatial_mask=None, bone_mask=None, limb_mask1=None, limb_mask2=None):
        """Pretraining forward with explicit masks, as the released ``Model_MAE.forward``.

        x [B, F, J, 2]; mask [F] bool (True = frame hidden); the joint masks [F, J] bool.
        Returns [B, F, J, 2], frames ordered visible then hidden (see ``frame_order``)."""
        mask = torch.as_tensor(mask, device=x.device, dtype=torch.bool)
        masks = dict(spatial_mask=spatial_mask, bone_mask=bone_mask, limb_mask1=limb_mask1,
                     limb_mask2=limb_mask2)
        return self._reconstruct(x, mask, int(mask.sum()), masks)[0]

    @staticmethod
    def frame_order(mask):
        """Indices of the visible frames then the hidden ones, each ascending. [F] -> [F] long"""
        return torch.argsort(torch.as_tensor(mask).to(torch.int32), stable=True)

    def _reconstruct(self, x, mask, hidden_count, masks):
        """hidden_count is passed in (not read from ``mask``) so that no device sync is needed."""
        batch, frames = x.shape[:2]
        order = self.frame_order(mask)
        visible, hidden = order[:frames - hidden_count], order[frames - hidden_count:]
        features = self.Transformer(self.embed(x, masks), keep=visible)
        features = self.encoder_to_decoder(self.encoder_LN(features))
        pos = self.dec_pos_embedding[0]
        tokens = torch.cat([features + pos[visible],
                            (self.mask_token + pos[hidden]).expand(batch, -1, -1)], 1)
        return run_head(self.fcn_dec, self.Transformer_dec(tokens), self.out_joints), order


def _detect(state_dict, first_key, hierarchical):
    if first_key not in state_dict:
        return None
    config = transformer_config(state_dict)
    config['num_joints'] = int(state_dict[first_key].shape[1]) // 2
    if 'encoder_to_decoder.weight' in state_dict:
        config['pretrain'] = True
        config['out_joints'] = int(state_dict['fcn_dec.1.weight'].shape[0]) // 2
    else:
        config['out_joints'] = int(state_dict['fcn.1.weight'].shape[0]) // 3
    if hierarchical:
        prefix = 'encoder1.layers.'
        blocks = {k[len(prefix):].split('.')[0] for k in state_dict if k.startswith(prefix)}
        config['sem_layers'] = len(blocks)
        config['mask_tokens'] = 'bone_mask_token' in state_dict
    return config


def detect_stmo(state_dict):
    """Constructor kwargs for a P-STMO (fine-tune or pretrain) state dict, else None."""
    return _detect(state_dict, 'encoder.fc_1.weight', hierarchical=False)


def detect_aptpose(state_dict):
    """Constructor kwargs for an APTPose (stage I or II, H3.6M or 3DHP class) state dict, else None."""
    return _detect(state_dict, 'encoder1.fc_1.weight', hierarchical=True)


def _stmo_kwargs(num_frame, frames, num_joints, n_joints, out_joints, layers, channel, d_hid, stride_num,
                 num_heads, heads, dropout, pretrain, temporal_mask_rate, spatial_mask_num,
                 in_channels, out_channels, default_layers, default_smn):
    check_io_channels(in_channels, out_channels)
    num_joints = resolve_alias('num_joints', num_joints, n_joints, default=17)
    return dict(num_frame=resolve_alias('num_frame', num_frame, frames, default=243),
                num_joints=num_joints, out_joints=out_joints or num_joints,
                layers=layers or default_layers, channel=channel or 256, d_hid=d_hid or 512,
                stride_num=stride_num, heads=resolve_alias('num_heads', num_heads, heads, default=8),
                dropout=0.1 if dropout is None else dropout, pretrain=bool(pretrain),
                temporal_mask_rate=0.8 if temporal_mask_rate is None else temporal_mask_rate,
                spatial_mask_num=default_smn if spatial_mask_num is None else spatial_mask_num)


@register_model('stmo', aliases=('pstmo', 'p-stmo'), detect_official=detect_stmo)
def build_stmo(num_frame=None, frames=None, num_joints=None, n_joints=None, out_joints=None, layers=None,
               channel=None, d_hid=None, stride_num=None, num_heads=None, heads=None, dropout=None,
               pretrain=False, temporal_mask_rate=None, spatial_mask_num=None, in_channels=2,
               out_channels=3):
    """P-STMO (layers 3: P-STMO-S, 4: P-STMO); pretrain=True builds the MAE model (defaults
    temporal_mask_rate 0.8, spatial_mask_num 2: P-STMO-S's pretraining)."""
    return STMO(**_stmo_kwargs(num_frame, frames, num_joints, n_joints, out_joints, layers, channel,
                               d_hid, stride_num, num_heads, heads, dropout, pretrain,
                               temporal_mask_rate, spatial_mask_num, in_channels, out_channels,
                               default_layers=3, default_smn=2))


@register_model('aptpose', detect_official=detect_aptpose)
def build_aptpose(num_frame=None, frames=None, num_joints=None, n_joints=None, out_joints=None,
                  layers=None, channel=None, d_hid=None, stride_num=None, num_heads=None, heads=None,
                  dropout=None, pretrain=False, temporal_mask_rate=None, spatial_mask_num=None,
                  sem_layers=None, mask_tokens=None, bone_mask_num=None, layout=None, dataset=None,
                  in_channels=2, out_channels=3):
    """APTPose stage II (stage I with pretrain=True). layout 'h36m_17' (default) or
    'mpii3d_univ_17' (``dataset`` 'h36m' / 'mpii3d_univ' in earlier configs) picks the left/right
    joints of the limb and side masks; mask_tokens defaults to True except for mpii3d_univ_17
    fine-tuning (the released 3DHP class has no tokens and no masking).
    Defaults: layers 4, spatial_mask_num 0 (fine-tune) / 2 (pretrain), tmr 0.8, sem_layers 1."""
    layout = layout_name(layout, dataset)
    if layout not in APTPOSE_LAYOUTS:
        raise ValueError(f"APTPose supports the layouts {', '.join(APTPOSE_LAYOUTS)}, not '{layout}'")
    if mask_tokens is None:
        mask_tokens = bool(pretrain) or layout == 'h36m_17'
    kwargs = _stmo_kwargs(num_frame, frames, num_joints, n_joints, out_joints, layers, channel, d_hid,
                          stride_num, num_heads, heads, dropout, pretrain, temporal_mask_rate,
                          spatial_mask_num, in_channels, out_channels, default_layers=4,
                          default_smn=2 if pretrain else 0)
    return STMO(hierarchical=True, mask_tokens=mask_tokens, sem_layers=sem_layers or 1,
                bone_mask_num=bone_mask_num or 1, layout=layout, **kwargs)
