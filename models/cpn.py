"""CPN-50 (Cascaded Pyramid Network, Chen et al., CVPR 2018) as Context-Aware PoseFormer uses it:
a frozen backbone returning four 256-channel maps at stride 4.

Key names follow the CPN training code's ``CPN50_256x192.pth.tar`` (after ``module.`` is
stripped): ``resnet.*`` (ResNet-50), ``global_net.*`` (the feature pyramid) and ``refine_net.*``.
``forward`` returns the refine net's four maps before they would be concatenated: level i is the
pyramid level i (level 0 from layer4, the deepest) after 3 - i refine Bottlenecks, bilinearly
up-sampled (align_corners=True) to ``output_shape``. The global net's heat-map branches
(``global_net.predict.*``) and the refine net's ``final_predict.*`` are stored in the file and
loaded, but do not contribute to the maps, so they are not run.
"""
import torch.nn as nn

BN_EPS = 1e-5
PYRAMID_CHANNELS = (2048, 1024, 512, 256)   # layer4, layer3, layer2, layer1


def conv_bn(cin, cout, kernel=1, stride=1):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)]


class ResidualUnit(nn.Module):
    """ResNet Bottleneck (1x1, 3x3, 1x1) with ``expansion`` x planes outputs; ``projected``: the
    shortcut is a 1x1 conv + BN (the refine net's units always have one)."""

    def __init__(self, cin, planes, stride=1, expansion=4, projected=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv3 = nn.Conv2d(planes, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(*conv_bn(cin, planes * expansion, 1, stride)) \
            if projected or stride != 1 or cin != planes * expansion else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """forward: [B, 3, H, W] -> [layer4, layer3, layer2, layer1] (strides 32, 16, 8, 4)."""

    def __init__(self, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            stride = 1 if index == 0 else 2
            units = [ResidualUnit(cin, planes, stride)] + [ResidualUnit(planes * 4, planes) for _ in range(count - 1)]
            setattr(self, f'layer{index + 1}', nn.Sequential(*units))
            cin = planes * 4

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [self.layer4(c3), c3, c2, c1]


class GlobalNet(nn.Module):
    """The feature pyramid, deepest level first: level i = lateral_i(c_i) + upsample_{i-1}(level i-1)."""

    def __init__(self, output_shape, num_class=17):
        super().__init__()
        self.laterals = nn.ModuleList([nn.Sequential(*conv_bn(c, 256), nn.ReLU(inplace=True))
                                       for c in PYRAMID_CHANNELS])
        self.upsamples = nn.ModuleList([
            nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True), *conv_bn(256, 256))
            for _ in PYRAMID_CHANNELS[:-1]])
        self.predict = nn.ModuleList([   # heat-map branches: stored weights, no part in the maps
            nn.Sequential(*conv_bn(256, 256), nn.ReLU(inplace=True), nn.Conv2d(256, num_class, 3, 1, 1, bias=False),
                          nn.Upsample(size=output_shape, mode='bilinear', align_corners=True),
                          nn.BatchNorm2d(num_class, eps=BN_EPS))
            for _ in PYRAMID_CHANNELS])

    def forward(self, pyramid):
        levels = []
        for index, (lateral, x) in enumerate(zip(self.laterals, pyramid)):
            level = lateral(x) if index == 0 else lateral(x) + self.upsamples[index - 1](levels[-1])
            levels.append(level)
        return levels


class RefineNet(nn.Module):
    def __init__(self, output_shape, num_class=17):
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.cascade = nn.ModuleList([
            nn.Sequential(*[ResidualUnit(256, 128, expansion=2, projected=True) for _ in range(3 - level)],
                          nn.Upsample(size=self.output_shape, mode='bilinear', align_corners=True))
            for level in range(4)])
        self.final_predict = nn.Sequential(   # the refined heat-maps: stored, never run
            ResidualUnit(4 * 256, 128, expansion=2, projected=True), nn.Conv2d(256, num_class, 3, 1, 1, bias=False),
            nn.BatchNorm2d(num_class, eps=BN_EPS))

    def forward(self, levels):
        return [stage(level) for stage, level in zip(self.cascade, levels)]


class CPN(nn.Module):
    """CPN-50 backbone; forward: [B, 3, H, W] (H, W = 4 x output_shape) -> four [B, 256, *output_shape]."""

    def __init__(self, output_shape=(64, 48), num_class=17):
        super().__init__()
        self.resnet = ResNet50()
        self.global_net = GlobalNet(output_shape, num_class)
        self.refine_net = RefineNet(output_shape, num_class)

    def forward(self, images):
        return self.refine_net(self.global_net(self.resnet(images)))


def build_cpn(output_shape=(64, 48)):
    """CPN-50 with the release's fixed map size (64, 48), that of the 256 x 192 crop."""
    return CPN(tuple(output_shape))

