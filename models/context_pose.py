"""Context-Aware PoseFormer (Zhao et al., NeurIPS 2023): the single-frame lifting head.

The head lifts the 2D joints of one frame with help from multi-level feature maps of a
frozen 2D pose backbone (HRNet-32/48 or CPN; the backbone itself is not part of this
module). Tokens are indexed (level, joint): level 0 embeds the 2D coordinates, levels
1..L the backbone features sampled at the joints. Then

1. context blocks: deformable attention; each feature token samples its own map around
   the joint at learned offsets (the coordinate token only conditions the queries);
2. res blocks: attention across the L + 1 level tokens of each joint;
3. joint blocks: the level tokens of a joint concatenated, attention across joints;
4. LayerNorm + Linear head -> 3D joints.

Unlike the keypoint-only lifters, ``forward`` needs the feature maps and the joints'
positions inside the image crop, so datasets without images cannot train it.
Official checkpoints (``{'model': {'module.backbone.*', 'module.volume_net.*'}}``)
load through ``common.train.checkpoint.load_checkpoint``; the backbone part is dropped.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.eval.metrics import mpjpe
from models import register_model
from models.base import Lifter
from models.blocks import Block, DropPath, Mlp

CROP_SIZE = (192, 256)   # (width, height) of the image crop the backbone sees


def ref_from_crop_pixels(pixels, crop_size=CROP_SIZE):
    """Joint positions in crop pixels (x, y) [..., 2] -> grid_sample coordinates in [-1, 1]."""
    half = pixels.new_tensor([crop_size[0] // 2, crop_size[1] // 2])
    return pixels / half - 1


def sample_at(features, positions, padding_mode):
    """Bilinear feature sampling (align_corners=True: -1 / +1 are the outer pixel centres).

    features [B, C, H, W], positions [B, P, S, 2] as (x, y) -> [B, P, S, C]."""
    sampled = F.grid_sample(features, positions, padding_mode=padding_mode, align_corners=True)
    return sampled.permute(0, 2, 3, 1)


class DeformableContextBlock(nn.Module):
    """Deformable attention of feature tokens into their own feature maps.

    x [B, L+1, J, C] (level 0: coordinate token), ref [B, J, 2] -> [B, L+1, J, C].
    feature_channels -- channels of the L maps; num_heads x num_samples points per token."""

    def __init__(self, feature_channels, dim, num_heads=4, num_samples=4, mlp_ratio=2.0, drop_path=0.0):
        super().__init__()
        self.num_heads, self.num_samples = num_heads, num_samples
        self.norm1 = nn.LayerNorm(dim)
        self.attention_weights = nn.Linear(dim, num_heads * num_samples)
        self.sampling_offsets = nn.Linear(dim, 2 * num_heads * num_samples)
        self.embed_proj = nn.ModuleList([nn.Linear(c, dim // num_heads) for c in feature_channels])
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self._init_sampling()

    def _init_sampling(self):
        """Zero weights; head h starts sampling along direction 2*pi*h/heads, sample s at
        distance 0.01*(s+1) (in normalised map units, before tanh)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        angle = torch.arange(self.num_heads) * (2 * torch.pi / self.num_heads)
        direction = torch.stack([angle.cos(), angle.sin()], -1)
        direction = direction / direction.abs().amax(-1, keepdim=True)
        scale = torch.arange(1, self.num_samples + 1, dtype=torch.float32)[None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((0.01 * direction[:, None] * scale).flatten())

    def forward(self, x, ref, features, intermediates=None, prefix=''):
        coord, tokens = x[:, :1], x[:, 1:]
        _, levels, joints, dim = tokens.shape  # -1 for the batch below: traced graphs keep it free
        query = self.norm1(tokens + coord)
        weight_logits = self.attention_weights(query)
        offset_logits = self.sampling_offsets(query)
        if intermediates is not None:
            intermediates[prefix + '_attention_weights_linear'] = weight_logits
            intermediates[prefix + '_sampling_offsets_linear'] = offset_logits
        weights = weight_logits.view(-1, levels, joints, self.num_heads, self.num_samples, 1).softmax(-2)
        points = self.num_heads * self.num_samples
        positions = offset_logits.view(-1, levels, joints, points, 2).tanh() + ref[:, None, :, None]
        # one map per level, with its own channel count: a short loop over the levels
        sampled = torch.stack([embed(sample_at(level_map, positions[:, level], 'border'))
                               for level, (embed, level_map) in enumerate(zip(self.embed_proj, features))], 1)
        sampled = sampled.unflatten(3, (self.num_heads, self.num_samples))
        context = (weights * sampled).sum(-2).reshape(-1, levels, joints, dim)
        tokens = tokens + self.drop_path(context)
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return torch.cat([coord, tokens], 1)


class ContextPose(Lifter):
    """Context-Aware PoseFormer lifting head; argument meanings in ``context_pose``."""

    predicts = 'centre'
    receptive_field = 1
    inputs = ('keypoints', 'image_features')

    def __init__(self, feature_channels=(32, 64, 128, 256), embed_dim_ratio=128, levels=4,
                 num_joints=17, num_heads=8, mlp_ratio=2.0, qkv_bias=True, deform_heads=4,
                 deform_samples=4, dropout=0.0, attn_drop_rate=0.0, drop_path_rate=0.2):
        super().__init__()
        if len(feature_channels) != levels:
            raise ValueError(f'{len(feature_channels)} feature maps for {levels} levels')
        dim, joint_dim = embed_dim_ratio, embed_dim_ratio * (levels + 1)
        self.num_joints, self.levels = num_joints, levels
        rates = torch.linspace(0, drop_path_rate, levels).tolist()
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, levels + 1, num_joints, dim))
        self.coord_embed = nn.Linear(2, dim)
        self.feat_embed = nn.ModuleList([nn.Linear(c, dim) for c in feature_channels])
        self.pos_drop = nn.Dropout(dropout)
        # construction order as the official module, so state dicts list keys alike
        self.joint_blocks = nn.ModuleList([
            Block(joint_dim, num_heads, mlp_ratio, qkv_bias, None, dropout, attn_drop_rate, rate, norm_eps=1e-6)
            for rate in rates])
        self.res_blocks = nn.ModuleList([
            Block(dim, num_heads, mlp_ratio, qkv_bias, None, dropout, attn_drop_rate, rate, norm_eps=1e-6)
            for rate in rates])
        self.context_blocks = nn.ModuleList([
            DeformableContextBlock(feature_channels, dim, deform_heads, deform_samples, mlp_ratio, rate)
            for rate in rates])
        self.head = nn.Sequential(nn.LayerNorm(joint_dim), nn.Linear(joint_dim, 3))

    def forward(self, keypoints_2d, ref, features, return_intermediates=False):
        """keypoints_2d [B, J, 2] normalised screen coordinates; ref [B, J, 2] joint positions in
        the crop as grid coordinates (``ref_from_crop_pixels``); features -- list of L maps
        [B, C_l, H_l, W_l]. Returns [B, 1, J, 3] (and an intermediates dict if asked)."""
        batch = keypoints_2d.shape[0]
        inter = {} if return_intermediates else None
        coord = self.coord_embed(keypoints_2d)
        at_joints = ref[:, :, None]                                   # [B, J, 1, 2]
        feats = [embed(sample_at(level_map, at_joints, 'zeros')[:, :, 0])
                 for embed, level_map in zip(self.feat_embed, features)]
        if inter is not None:
            inter['coord_embed'] = coord
            inter.update({f'feat_embed_{i}': f for i, f in enumerate(feats)})
        x = self.pos_drop(torch.stack([coord, *feats], 1) + self.Spatial_pos_embed)
        for index, block in enumerate(self.context_blocks):
            x = block(x, ref, features, inter, f'context_block_{index}')
            if inter is not None:
                inter[f'context_block_{index}'] = x
        x = x.transpose(1, 2).flatten(0, 1)                           # [B*J, L+1, C]
        for index, block in enumerate(self.res_blocks):
            x = block(x)
            if inter is not None:
                inter[f'res_block_{index}'] = x
        x = x.reshape(batch, self.num_joints, -1)                   # [B, J, (L+1)*C]
        for index, block in enumerate(self.joint_blocks):
            x = block(x)
            if inter is not None:
                inter[f'joint_block_{index}'] = x
        out = self.head(x)[:, None]
        return (out, inter) if return_intermediates else out

    def example_inputs(self, batch, generator=None, height=64, width=48):
        """forward's arguments for ``batch`` crops (export, benchmarks): keypoints and ref
        [B, J, 2], feature maps [B, C_l, H / 2^l, W / 2^l] (HRNet's strides on a 256x192 crop)."""
        joints = self.num_joints
        keypoints = torch.rand(batch, joints, 2, generator=generator) - 0.5
        ref = torch.rand(batch, joints, 2, generator=generator) * 1.6 - 0.8  # joints inside the crop
        maps = [torch.randn(batch, embed.in_features, height >> level, width >> level, generator=generator)
                for level, embed in enumerate(self.feat_embed)]
        return keypoints, ref, maps

    def training_loss(self, keypoints_2d, ref, features, target):
        """Official criterion: MPJPE without alignment; target [B, 1, J, 3] root-relative."""
        return mpjpe(self(keypoints_2d, ref, features), target)

    def convert_official_state_dict(self, state_dict):
        """Official ``model`` entry (``module.`` stripped): keep ``volume_net.*`` without the
        prefix, drop the backbone."""
        if not any(k.startswith('volume_net.') for k in state_dict):
            return state_dict
        return {k[len('volume_net.'):]: v for k, v in state_dict.items() if k.startswith('volume_net.')}


def _detect(state_dict):
    prefix = 'volume_net.' if 'volume_net.Spatial_pos_embed' in state_dict else ''
    pos = state_dict.get(prefix + 'Spatial_pos_embed')
    if pos is None or prefix + 'context_blocks.0.sampling_offsets.weight' not in state_dict:
        return None
    levels = pos.shape[1] - 1
    channels = [state_dict[f'{prefix}feat_embed.{i}.weight'].shape[1] for i in range(levels)]
    return {'feature_channels': channels, 'embed_dim_ratio': pos.shape[-1], 'levels': levels,
            'num_joints': pos.shape[2]}


BACKBONE_CHANNELS = {'hrnet_32': 32, 'hrnet_48': 48, 'cpn': 256}


@register_model('context_pose', aliases=('context_aware_poseformer', 'ca_pf'), detect_official=_detect)
def context_pose(backbone='hrnet_32', base_dim=None, feature_channels=None, embed_dim_ratio=128,
                 levels=4, num_joints=17, num_heads=8, mlp_ratio=2.0, qkv_bias=True, deform_heads=4,
                 deform_samples=4, dropout=0.0, attn_drop_rate=0.0, drop_path_rate=0.2):
    """Build the Context-Aware PoseFormer head.

    backbone -- 'hrnet_32' | 'hrnet_48' (maps of b, 2b, 4b, 8b channels) | 'cpn' (four of b)
    base_dim -- b (default 32 / 48 / 256 by backbone); feature_channels overrides both
    embed_dim_ratio -- token width C of the context and res stages (128); joint width (L+1)*C
    levels -- feature maps used, = blocks per stack (4)
    num_heads -- res / joint attention heads (8); deform_heads x deform_samples -- sampling
    points per context token (4 x 4); mlp_ratio (2); dropout, attn_drop_rate, drop_path_rate (0.2)"""
    if feature_channels is None:
        if backbone not in BACKBONE_CHANNELS:
            raise ValueError(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONE_CHANNELS)}")
        base = base_dim or BACKBONE_CHANNELS[backbone]
        feature_channels = [base] * levels if backbone == 'cpn' else [base * 2 ** i for i in range(levels)]
    return ContextPose(list(feature_channels), embed_dim_ratio, levels, num_joints, num_heads, mlp_ratio,
                       qkv_bias, deform_heads, deform_samples, dropout, attn_drop_rate, drop_path_rate)


# ----------------------------------------------------------------------------- backbone + head

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # RGB order
CPN_MEAN = (122.7717 / 255, 115.9465 / 255, 102.9801 / 255)                  # RGB, no std
FLIP_LEFT, FLIP_RIGHT = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]        # h36m_17 pairs


def normalise_images(images_bgr, backbone='hrnet_32'):
    """The release's input: uint8 crops [B, H, W, 3] in BGR (as decoded) -> float32 RGB,
    (x / 255 - mean) / std with the ImageNet statistics for HRNet, x / 255 - CPN's pixel means
    for CPN, in this order (bit-equal to the release)."""
    rgb = torch.flip(images_bgr, [-1]).float()
    if backbone == 'cpn':
        return rgb / 255.0 - rgb.new_tensor(CPN_MEAN)
    return (rgb / 255.0 - rgb.new_tensor(IMAGENET_MEAN)) / rgb.new_tensor(IMAGENET_STD)


def mirror_keypoints(keypoints_2d, crop_pixels, crop_width=CROP_SIZE[0]):
    """2D inputs [B, J, 2] of the mirrored view, as the release flips them: normalised x -> -x,
    crop x -> width - x - 1, left/right joints swapped."""
    keypoints_2d, crop_pixels = keypoints_2d.clone(), crop_pixels.clone()
    keypoints_2d[..., 0] *= -1
    crop_pixels[..., 0] = crop_width - crop_pixels[..., 0] - 1
    swap = FLIP_LEFT + FLIP_RIGHT
    keypoints_2d[:, swap] = keypoints_2d[:, FLIP_RIGHT + FLIP_LEFT]
    crop_pixels[:, swap] = crop_pixels[:, FLIP_RIGHT + FLIP_LEFT]
    return keypoints_2d, crop_pixels


def mirror_batch(images, keypoints_2d, crop_pixels, crop_width=CROP_SIZE[0]):
    """The mirrored view of a batch: images [B, H, W, 3] flipped along W, 2D as mirror_keypoints."""
    return (torch.flip(images, [2]), *mirror_keypoints(keypoints_2d, crop_pixels, crop_width))


def mirror_pose_3d(pose):
    """A 3D prediction or target [B, F, J, 3] of the mirrored view, mirrored back."""
    pose = pose.clone()
    pose[..., 0] *= -1
    pose[:, :, FLIP_LEFT + FLIP_RIGHT] = pose[:, :, FLIP_RIGHT + FLIP_LEFT]
    return pose


class ContextPoseNetwork(nn.Module):
    """The release's complete network: a frozen image backbone and the lifting head, with the
    official key names (``backbone.*``, ``volume_net.*``).

    forward(images [B, H, W, 3] normalised RGB, keypoints_2d [B, J, 2], crop_pixels [B, J, 2])
    -> [B, 1, J, 3] root-relative metres."""

    def __init__(self, backbone: nn.Module, head: ContextPose, backbone_name: str):
        super().__init__()
        self.backbone, self.volume_net, self.backbone_name = backbone, head, backbone_name
        self.model_name = getattr(head, 'model_name', None) or 'context_pose'
        self.model_config = {**getattr(head, 'model_config', {}), 'image_backbone': backbone_name}
        self.official_strict = True
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)

    def train(self, mode=True):
        """The backbone stays in eval mode (frozen BatchNorm statistics), as the release trains."""
        super().train(mode)
        self.backbone.eval()
        return self

    def normalise(self, images_bgr):
        """uint8 crops [B, H, W, 3] BGR -> this backbone's normalised input."""
        return normalise_images(images_bgr, self.backbone_name)

    def features(self, images):
        """images [B, H, W, 3] normalised -> the backbone's maps (no gradients)."""
        with torch.no_grad():
            return self.backbone(images.permute(0, 3, 1, 2).contiguous())

    def forward(self, images, keypoints_2d, crop_pixels):
        return self.volume_net(keypoints_2d, ref_from_crop_pixels(crop_pixels), self.features(images))

    def convert_official_state_dict(self, state_dict):
        return state_dict
