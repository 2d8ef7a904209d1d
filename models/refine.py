"""The refine module of P-STMO, APTPose and the Strided Transformer (after ST-GCN, Cai et al.
ICCV 2019), its uvd -> xyz back-projection, and ``refined``: a centre-frame lifter and the refine
module trained together, as the releases do in their last stage (``--refine`` while training).

The refinement needs the ground-truth root depth and the camera intrinsics (the published
protocol), so it is not part of a lifter's ``forward``: evaluation applies it frame by frame
(common.eval.evaluation.refine_sequence) and training through ``RefinedLifter.training_loss``.
Parameter names follow the published files (``post_refine.0`` / ``post_refine.3``).
"""
import torch
import torch.nn as nn

from common.eval.metrics import mpjpe
from models import build_model, register_model
from models.base import Lifter
from models.strided import check_io_channels, resolve_alias


class PoseRefiner(Lifter):
    """Refine module of P-STMO / APTPose / Strided Transformer: per-joint sigmoid weights blend
    the x, y of the lifted pose with those of the pose rebuilt from 2D and predicted depth.

    forward(x, x_1): x, x_1 [B, 1, J, 3] -> [B, 1, J, 3]; out_xy = s * x_xy + (1 - s) * x_1_xy,
    z from x, with s = post_refine(cat(x, x_1) flattened per sample) [B, 1, J, 2]."""

    predicts = 'centre'
    receptive_field = 1
    official_strict = False

    def __init__(self, num_joints=17, hidden=1024):
        super().__init__()
        self.post_refine = nn.Sequential(nn.Linear(6 * num_joints, hidden), nn.ReLU(),
                                         nn.Dropout(0.5), nn.Linear(hidden, 2 * num_joints),
                                         nn.Sigmoid())

    def example_inputs(self, batch, generator=None):
        """forward's arguments for ``batch`` frames: the lifted pose and the rebuilt one [B, 1, J, 3]."""
        joints = self.post_refine[-2].out_features // 2
        return tuple(torch.rand(batch, 1, joints, 3, generator=generator) - 0.5 for _ in range(2))

    def forward(self, x, x_1):
        b, t, j, _ = x.shape
        score = self.post_refine(torch.cat([x, x_1], -1).reshape(b, -1)).view(b, t, j, 2)
        return torch.cat([score * x[..., :2] + (1 - score) * x_1[..., :2], x[..., 2:]], -1)


def uvd_to_xyz(uvd, root_depth, intrinsics):
    """Back-project image points with depths to root-relative camera coordinates.

    uvd -- [B, T, J, 3]: normalised u, v and depth relative to the root (joint 0's own depth is
    ignored); root_depth -- [B, T] absolute root depth; intrinsics -- [B, >=4] normalised
    (fx, fy, cx, cy, ...), no distortion. Returns [B, T, J, 3] relative to joint 0."""
    z = torch.cat([root_depth[..., None], uvd[..., 1:, 2] + root_depth[..., None]], -1)[..., None]
    focal = intrinsics[:, None, None, :2]
    centre = intrinsics[:, None, None, 2:4]
    xyz = torch.cat([(uvd[..., :2] - centre) * z / focal, z], -1)
    return xyz - xyz[:, :, :1]


def refine_inputs(pose2d_centre, pred3d, gt_root_depth, intrinsics):
    """Second input of the refine module, as the released test loop builds it.

    pose2d_centre [B, 1, J, 2] centre-frame 2D input; pred3d [B, 1, J, 3] lifted pose;
    gt_root_depth [B, 1] ground-truth root depth (the published protocol uses the ground truth);
    intrinsics [B, >=4]. Returns x_1 [B, 1, J, 3] with joint 0 at the origin."""
    xyz = uvd_to_xyz(torch.cat([pose2d_centre, pred3d[..., 2:3]], -1), gt_root_depth, intrinsics)
    return torch.cat([torch.zeros_like(xyz[:, :, :1]), xyz[:, :, 1:]], 2)


def detect_refine(state_dict):
    if set(state_dict) != {f'post_refine.{i}.{p}' for i in (0, 3) for p in ('weight', 'bias')}:
        return None
    return {'num_joints': int(state_dict['post_refine.3.weight'].shape[0]) // 2,
            'fc_unit': int(state_dict['post_refine.0.weight'].shape[0])}


@register_model('refine', detect_official=detect_refine, selectable=False)
def build_refine(num_joints=None, n_joints=None, fc_unit=None, in_channels=2, out_channels=3,
                 out_seqlen=1):
    """Refine module; forward(x, x_1) as in PoseRefiner (not a 2D -> 3D lifter itself)."""
    check_io_channels(in_channels, out_channels)
    if out_seqlen != 1:
        raise ValueError('the refine module works on single frames (out_seqlen 1)')
    return PoseRefiner(resolve_alias('num_joints', num_joints, n_joints, default=17), fc_unit or 1024)


class RefinedLifter(Lifter):
    """``lifter`` (a centre-frame model) followed by ``refiner`` (PoseRefiner).

    forward(x) is the lifter's, [B, F, J, 2] -> [B, 1, J, 3]; evaluation refines it with the
    window's camera (see the module docstring). Training minimises the MPJPE of the refined
    centre frame only, so the lifter's all-frame head receives no gradient there."""

    predicts = 'centre'
    inputs = ('keypoints', 'camera')  # training_loss also takes the windows' intrinsics and root depths
    has_unused_parameters = True

    def __init__(self, lifter, refiner):
        super().__init__()
        if not isinstance(lifter, Lifter) or lifter.predicts != 'centre':
            raise ValueError('the refine module follows a centre-frame lifter (stmo, aptpose, strided)')
        self.lifter, self.refiner = lifter, refiner
        self.receptive_field = lifter.receptive_field
        self.eval_zero_root, self.default_optimizer = lifter.eval_zero_root, lifter.default_optimizer
        self.output_unit = lifter.output_unit  # the module refines in the lifter's unit

    @property
    def frame_step(self):
        return self.lifter.frame_step

    @frame_step.setter
    def frame_step(self, step):
        self.lifter.frame_step = step

    def forward(self, x):
        return self.lifter(x)

    def evaluation_refiner(self):
        return self.refiner

    def training_loss(self, x, target, intrinsics=None, root_depth=None):
        """x [B, F, J, 2], target [B, F, J, 3], intrinsics [B, 9], root_depth [B, F] (absolute
        ground-truth depth of the root; target and depth in the output unit) -> scalar. The
        releases feed the lifter's centre pose to the refiner as predicted (root not reset) and
        score against the root-relative target."""
        pad = x.shape[1] // 2
        pred = self.lifter(x)
        x_1 = refine_inputs(x[:, pad:pad + 1], pred, root_depth[:, pad:pad + 1], intrinsics)
        return mpjpe(self.refiner(pred, x_1), target[:, pad:pad + 1])


def with_refiner(lifter, fc_unit=None):
    """A built centre-frame lifter (kept as it is, weights included) plus a fresh refine module
    sized for its output joints, recorded as the registry's ``refined`` so that a checkpoint
    rebuilds the pair."""
    pair = RefinedLifter(lifter, PoseRefiner(getattr(lifter, 'out_joints', 17), fc_unit or 1024))
    pair.model_name = 'refined'
    pair.model_config = {'lifter': lifter.model_name, 'lifter_config': dict(lifter.model_config)}
    return pair


@register_model('refined', selectable=False)
def build_refined(lifter='stmo', lifter_config=None, fc_unit=None):
    """A registered centre-frame lifter (by name, with its constructor kwargs) plus a refine
    module sized for its output joints."""
    return with_refiner(build_model(lifter, **(lifter_config or {})), fc_unit)
