"""VideoPose3D: dilated temporal convolutions over 2D keypoint sequences (Pavllo et al., CVPR 2019).

One module, two ways of running the same weights:

* ``forward(x)`` with exactly ``receptive_field`` frames uses strided convolutions
  (each layer's stride = its filter width) and computes only the one output frame
  the window has: the cheap form for training on single-frame targets.
  Longer inputs run the dilated form ("valid" convolution: T - receptive_field + 1
  output frames).
* ``predict_sequence(x)`` pads a whole sequence by repeating its end frames and runs
  the dilated form once, giving one prediction per input frame.

Parameter names follow the published checkpoints (``expand_conv``, ``expand_bn``,
``layers_conv.N``, ``layers_bn.N``, ``shrink``), so their ``{'model_pos': ...}``
files load unchanged.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import register_model
from models.base import Lifter
from models.blocks import channels_last_norm, pointwise

_PREFIXES = ('expand_conv.', 'expand_bn.', 'layers_conv.', 'layers_bn.', 'shrink.')


def detect_official(state_dict) -> Optional[dict]:
    """Constructor kwargs of the VideoPose3D model a state dict belongs to, or None.

    Filter widths come from the kernel sizes (a ``dense`` ablation checkpoint would be
    read as a dilated one with wide kernels), channels and joints from the shapes."""
    if 'expand_conv.weight' not in state_dict or 'shrink.weight' not in state_dict:
        return None
    if not all(key.startswith(_PREFIXES) for key in state_dict):
        return None
    expand = state_dict['expand_conv.weight']
    if expand.dim() != 3:
        return None
    channels, inputs, first_width = expand.shape
    joints_out = state_dict['shrink.weight'].shape[0] // 3
    # x, y per joint; x, y and the detector's confidence in the models trained on 3-channel detections
    in_features = 3 if inputs == 3 * joints_out else 2
    if inputs % in_features:
        return None
    num_convs = sum(1 for k in state_dict if k.startswith('layers_conv.') and k.endswith('.weight'))
    if num_convs % 2:
        return None
    widths = [int(first_width)] + [int(state_dict[f'layers_conv.{2 * i}.weight'].shape[-1])
                                   for i in range(num_convs // 2)]
    config = {'filter_widths': widths, 'channels': int(channels), 'num_joints': int(joints_out)}
    if inputs // in_features != joints_out:
        config['num_joints_in'] = int(inputs // 2)
    if in_features == 3:
        config['in_features'] = 3
    return config


@register_model('videopose', aliases=('videopose3d', 'temporal_conv'), detect_official=detect_official)
class VideoPose3D(Lifter):
    """Temporal convolution lifter.

    filter_widths -- kernel width of each block; the receptive field is their product
                     ([3, 3, 3] = 27 frames, [3, 3, 3, 3, 3] = 243)
    num_joints -- joints in and out (17)
    channels -- convolution channels (1024)
    dropout -- dropout probability after every convolution (0.25)
    causal -- only past frames (the prediction is for the last frame of the window)
    dense -- ablation: plain convolutions of the full block span instead of dilated ones
    num_joints_in, num_joints_out -- override ``num_joints`` for either side (official names)
    in_features -- input channels per joint (2)
    """
    predicts = 'centre'
    default_optimizer = 'adam_amsgrad'  # VideoPose3D trains with Adam (amsgrad)

    def __init__(self, filter_widths: Sequence[int] = (3, 3, 3, 3, 3), num_joints: int = 17,
                 channels: int = 1024, dropout: float = 0.25, causal: bool = False, dense: bool = False,
                 num_joints_in: Optional[int] = None, num_joints_out: Optional[int] = None,
                 in_features: int = 2):
        super().__init__()
        widths = [int(w) for w in filter_widths]
        if not widths or any(w < 1 or w % 2 == 0 for w in widths):
            raise ValueError(f'filter widths must be odd and positive, got {list(filter_widths)}')
        self.filter_widths = widths
        self.num_joints_in = num_joints_in or num_joints
        self.num_joints_out = num_joints_out or num_joints
        self.in_features = in_features
        self.causal, self.dense = bool(causal), bool(dense)
        self.receptive_field = math.prod(widths)
        pad = (self.receptive_field - 1) // 2
        # A causal model sees [t - 2 pad, t] for target t: windows shift left by this much.
        self.causal_shift = pad if self.causal else 0

        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.expand_conv = nn.Conv1d(self.num_joints_in * in_features, channels, widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)

        convs, norms = [], []
        self.block_pads, self.block_shifts = [], []   # per block, in frames of the dilated form
        dilation = widths[0]
        for width in widths[1:]:
            block_pad = (width - 1) * dilation // 2
            self.block_pads.append(block_pad)
            self.block_shifts.append(block_pad if self.causal else 0)
            if self.dense:
                convs.append(nn.Conv1d(channels, channels, 2 * block_pad + 1, bias=False))
            else:
                convs.append(nn.Conv1d(channels, channels, width, dilation=dilation, bias=False))
            norms.append(nn.BatchNorm1d(channels, momentum=0.1))
            convs.append(nn.Conv1d(channels, channels, 1, bias=False))
            norms.append(nn.BatchNorm1d(channels, momentum=0.1))
            dilation *= width
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(norms)
        self.shrink = nn.Conv1d(channels, self.num_joints_out * 3, 1)

    def on_epoch_start(self, epoch: int, epochs: int):
        """Engine hook: BatchNorm momentum decays exponentially from 0.1 to 0.001."""
        self.set_bn_momentum(0.1 * math.exp(-epoch / epochs * math.log(0.1 / 0.001)))

    def set_bn_momentum(self, momentum: float):
        """VideoPose3D decays BatchNorm momentum from 0.1 to 0.001 over training."""
        for norm in [self.expand_bn, *self.layers_bn]:
            norm.momentum = momentum

    def _check_input(self, x):
        assert x.dim() == 4 and x.shape[-2] == self.num_joints_in and x.shape[-1] == self.in_features, \
            f'expected [B, T, {self.num_joints_in}, {self.in_features}], got {tuple(x.shape)}'

    def _to_channels(self, x):
        """[B, T, J, C] -> [B, J * C, T] (joint-major channels, as the official model)."""
        self._check_input(x)
        return x.flatten(2).transpose(1, 2)

    def _to_poses(self, y):
        """[B, J * 3, T] -> [B, T, J, 3]."""
        return y.transpose(1, 2).unflatten(-1, (self.num_joints_out, 3))

    def _block(self, index, x, residual, conv_out):
        x = self.drop(self.relu(self.layers_bn[2 * index](conv_out)))
        return residual + self.drop(self.relu(self.layers_bn[2 * index + 1](self.layers_conv[2 * index + 1](x))))

    def _dilated(self, x):
        """Valid dilated convolutions: [B, J * C, T] -> [B, J * 3, T - receptive_field + 1]."""
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i, (pad, shift) in enumerate(zip(self.block_pads, self.block_shifts)):
            residual = x[:, :, pad + shift: x.shape[2] - pad + shift]
            x = self._block(i, x, residual, self.layers_conv[2 * i](x))
        return self.shrink(x)

    def _strided(self, x):
        """One window of exactly receptive_field frames: [B, rf, J * C] (channels last) ->
        [B, 1, J * 3].

        Each layer steps by its own width, so only the frames the single output needs are
        computed; the residual takes the middle (causal: the last) frame of each group. A
        strided convolution is a matrix product over groups of `width` frames, which on CPU
        runs (and back-propagates) several times faster than the convolution kernels."""
        def grouped(conv, x, width):  # [B, T, C] -> [B, T / width, C_out]
            weight = conv.weight.transpose(1, 2).flatten(1)  # [C_out, width * C], frame-major
            return F.linear(x.reshape(x.shape[0], x.shape[1] // width, -1), weight)

        def norm_act(norm, x):
            return self.drop(self.relu(channels_last_norm(norm, x)))

        x = norm_act(self.expand_bn, grouped(self.expand_conv, x, self.filter_widths[0]))
        for i, width in enumerate(self.filter_widths[1:]):
            offset = width - 1 if self.causal else width // 2
            residual = x[:, offset::width]
            x = norm_act(self.layers_bn[2 * i], grouped(self.layers_conv[2 * i], x, width))
            x = residual + norm_act(self.layers_bn[2 * i + 1], pointwise(self.layers_conv[2 * i + 1], x))
        return pointwise(self.shrink, x)

    def forward(self, x):
        """x [B, T, J, 2] with T >= receptive_field -> [B, T - receptive_field + 1, J, 3]
        (one frame for a training window: its centre, or its last frame when causal)."""
        if x.shape[1] < self.receptive_field:
            raise ValueError(f'{x.shape[1]} input frames, the receptive field is {self.receptive_field}')
        if x.shape[1] == self.receptive_field and not self.dense:
            self._check_input(x)
            return self._strided(x.flatten(2)).unflatten(-1, (self.num_joints_out, 3))
        return self._to_poses(self._dilated(self._to_channels(x)))

    def predict_sequence(self, x, max_batch=1024):
        """Whole sequences x [B, T, J, 2] -> [B, T, J, 3]: the ends are padded by repeating
        the first / last frame (causal: all padding before the first frame)."""
        pad = (self.receptive_field - 1) // 2
        channels = F.pad(self._to_channels(x), (pad + self.causal_shift, pad - self.causal_shift),
                         mode='replicate')
        return self._to_poses(self._dilated(channels))

    def convert_official_state_dict(self, state_dict):
        """Files written before BatchNorm counted its batches lack ``num_batches_tracked``;
        eval mode never reads it, so a zero count is filled in."""
        state_dict = dict(state_dict)
        for name, buffer in self.state_dict().items():
            if name.endswith('num_batches_tracked') and name not in state_dict:
                state_dict[name] = torch.zeros_like(buffer)
        return state_dict
