"""HRNet (Sun et al., CVPR 2019) in the deep-high-resolution-net pose layout: the frozen 2D
backbone of Context-Aware PoseFormer.

Module and key names follow the published COCO files (``pose_hrnet_w32_256x192.pth``,
``pose_hrnet_w48_256x192.pth``), so those files load by their own keys; their heat-map head
``final_layer.*`` is not part of this network and is dropped on loading. ``forward`` returns the
four maps the lifting head samples:

* level 0: the only output of the last stage-4 module (branch 0 after the fusion), C channels,
  stride 4;
* levels 1-3: branches 1-3 after the blocks of the *first* stage-4 module, before its fusion
  (2C, 4C, 8C channels, strides 8, 16, 32). The release returns the list it passed into stage 4,
  which that module overwrites in place with its branch outputs; these are those tensors.

Image height and width must be multiples of 32 (the fusions add up-sampled maps).
"""
import torch.nn as nn

BN_EPS = 1e-5

# width, (modules of stages 2, 3, 4), blocks per branch: the published configurations, and a
# narrow, shallow one for tests and first runs on a CPU
PRESETS = {
    'hrnet_32': dict(width=32, modules=(1, 4, 3), blocks=4, stem_blocks=4, stem_width=64),
    'hrnet_48': dict(width=48, modules=(1, 4, 3), blocks=4, stem_blocks=4, stem_width=64),
    'hrnet_tiny': dict(width=8, modules=(1, 1, 1), blocks=1, stem_blocks=1, stem_width=16),
}


def conv_bn(cin, cout, kernel, stride, relu):
    """Sequential(conv, BN[, ReLU]) with keys .0 and .1 as in the published files."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class BasicBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    """The stem's residual unit: 1x1 -> 3x3 -> 1x1 (x4 channels), projected shortcut if needed."""

    def __init__(self, cin, planes):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv_bn(cin, planes * 4, 1, 1, False) if cin != planes * 4 else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def fuse_layer(channels, source, target):
    """How branch ``source`` reaches the resolution and width of branch ``target`` (keys
    ``.0/.1`` for the up-sampling path, ``.k.0/.k.1`` for the k-th strided conv)."""
    if source > target:   # lower resolution: 1x1 conv, then nearest up-sampling
        return nn.Sequential(*conv_bn(channels[source], channels[target], 1, 1, False),
                             nn.Upsample(scale_factor=2 ** (source - target), mode='nearest'))
    steps = target - source   # higher resolution: strided 3x3 convs, ReLU between them
    return nn.Sequential(*[conv_bn(channels[source], channels[target] if k == steps - 1 else channels[source],
                                   3, 2, k < steps - 1) for k in range(steps)])


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output resolution sums all branches.

    forward(list of [B, C_b, H_b, W_b]) -> (fused outputs, branch outputs before the fusion)."""

    def __init__(self, channels, blocks, multi_scale_output=True):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*[BasicBlock(c) for _ in range(blocks)]) for c in channels])
        outputs = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList([
            nn.ModuleList([None if i == j else fuse_layer(channels, j, i) for j in range(len(channels))])
            for i in range(outputs)])
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs):
        branch_out = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, layers in enumerate(self.fuse_layers):
            total = branch_out[i]
            for j, layer in enumerate(layers):
                if j != i:
                    total = total + layer(branch_out[j])
            fused.append(self.relu(total))
        return fused, branch_out


class HRNet(nn.Module):
    """HRNet backbone; argument meanings in ``build_hrnet``. forward: [B, 3, H, W] normalised RGB
    -> list of 4 maps [B, C*2^l, H/2^(l+2), W/2^(l+2)]."""

    def __init__(self, width=32, modules=(1, 4, 3), blocks=4, stem_blocks=4, stem_width=64):
        super().__init__()
        self.width = width
        stem = stem_width
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(stem, stem),
                                    *[Bottleneck(stem * 4, stem) for _ in range(stem_blocks - 1)])
        previous = [stem * 4]
        for stage, count in zip((2, 3, 4), modules):
            channels = [width * 2 ** b for b in range(stage)]
            setattr(self, f'transition{stage - 1}', self._transition(previous, channels))
            setattr(self, f'stage{stage}', nn.Sequential(*[
                HighResolutionModule(channels, blocks, multi_scale_output=not (stage == 4 and m == count - 1))
                for m in range(count)]))
            previous = channels

    @staticmethod
    def _transition(previous, channels):
        """Existing branches change width with a 3x3 conv (or pass unchanged: None); a new branch
        comes from the lowest-resolution one through a strided 3x3 conv."""
        layers = []
        for b, c in enumerate(channels):
            if b < len(previous):
                layers.append(conv_bn(previous[b], c, 3, 1, True) if previous[b] != c else None)
            else:
                layers.append(nn.Sequential(conv_bn(previous[-1], c, 3, 2, True)))
        return nn.ModuleList(layers)

    @staticmethod
    def _enter(transition, ys):
        return [ys[b] if layer is None else layer(ys[min(b, len(ys) - 1)]) for b, layer in enumerate(transition)]

    def forward(self, images):
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for stage in (2, 3, 4):
            xs = self._enter(getattr(self, f'transition{stage - 1}'), ys)
            for index, module in enumerate(getattr(self, f'stage{stage}')):
                xs, branch_out = module(xs)
                if stage == 4 and index == 0:
                    first_branches = branch_out
            ys = xs
        return [ys[0], *first_branches[1:4]]


def build_hrnet(preset='hrnet_32', **overrides):
    """HRNet of a preset ('hrnet_32', 'hrnet_48' as published; 'hrnet_tiny' for tests), with
    width -- channels of branch 0 (branch b has width * 2^b); modules -- modules of stages 2-4;
    blocks -- BasicBlocks per branch in every module; stem_blocks -- Bottlenecks of layer1;
    stem_width -- channels of the stem convolutions (64; layer1 gives 4x as many)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown HRNet preset '{preset}'; choose one of {', '.join(PRESETS)}")
    return HRNet(**{**PRESETS[preset], **overrides})
