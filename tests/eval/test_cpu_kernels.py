"""oneDNN's fp32 products for CPU inference (common/eval/cpu_kernels.py): every lifter gives
ATen's outputs through them, the products really go there, GELU fused into the first MLP
product equals the separate one, and nothing changes where gradients are recorded."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.eval import cpu_kernels
from common.eval.backends import AcceleratedLifter, InferenceConfig, accelerate, example_inputs
from common.eval.inference import predict_sequence
from inference_models import every_lifter, tiny_model, tolerance
from models.blocks import Mlp

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="this torch has no oneDNN linear kernel")


@pytest.fixture
def routed(monkeypatch):
    """The shapes of the activations that went through oneDNN's kernel."""
    shapes = []
    kernel = cpu_kernels.LINEAR
    monkeypatch.setattr(cpu_kernels, 'LINEAR', lambda x, *rest: shapes.append(tuple(x.shape)) or kernel(x, *rest))
    return shapes


@every_lifter
def test_every_lifter_gives_its_aten_outputs_on_onednn(name, routed):
    model = tiny_model(name)
    fast = accelerate(model, InferenceConfig(cpu_kernels='onednn'), announce=pytest.fail)
    assert isinstance(fast, AcceleratedLifter) and fast.record['cpu_kernels'] == 'onednn'
    inputs = example_inputs(model, 3, seed=1)
    with torch.no_grad():
        expected = model(*inputs)
    assert torch.allclose(fast(*inputs), expected, atol=tolerance(name), rtol=0)  # grid_sample: see tolerance
    assert routed, 'no product went to oneDNN'


@pytest.mark.parametrize('name', ['retnet', 'mixste', 'stmo', 'videopose'])
def test_whole_sequences_give_their_aten_frames(name, routed):
    model = tiny_model(name)
    pose2d = torch.rand(2, 23, 17, 2) - 0.5
    expected = predict_sequence(model, pose2d, flip_pairs=([4, 5, 6], [1, 2, 3]))
    fast = accelerate(model, InferenceConfig(cpu_kernels='onednn'), announce=pytest.fail)
    assert torch.allclose(predict_sequence(fast, pose2d, flip_pairs=([4, 5, 6], [1, 2, 3])), expected,
                          atol=1e-5, rtol=0)


def test_the_gelu_goes_into_the_first_product():
    torch.manual_seed(0)
    model = nn.Sequential(Mlp(64, 256), Mlp(64, 256, act_layer=nn.ReLU))
    fused = cpu_kernels.with_fused_gelu(model, every_size=True)
    x = torch.randn(5, 7, 64)
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-5, rtol=0)
    assert 'forward' in vars(fused[0]) and 'forward' not in vars(fused[1])  # ReLU blocks keep theirs
    assert 'forward' not in vars(model[0])  # a copy: the model itself is untouched


def test_only_fp32_cpu_products_outside_autograd_are_routed(routed):
    weight = torch.randn(512, 512)  # large enough for the size rule
    x = torch.randn(300, 512)
    with cpu_kernels.OneDnnProducts():
        with torch.no_grad():
            y = x @ weight.t()
            F.linear(x.bfloat16(), weight.bfloat16())  # bf16 layers: ATen (oneDNN's bf16 path already)
            x.unsqueeze(0) @ x.t().unsqueeze(0)  # two activations: ATen
        F.linear(x, weight)  # gradients recorded (training): ATen
    assert routed == [(300, 512)]
    assert torch.allclose(y, x @ weight.t(), atol=1e-4, rtol=0)


def test_small_products_stay_on_aten(routed):
    with torch.no_grad(), cpu_kernels.OneDnnProducts():
        F.linear(torch.randn(1000, 64), torch.randn(64, 64))           # small weight: any rows
        F.linear(torch.randn(50, 256), torch.randn(256, 256))          # medium weight, few rows
        F.linear(torch.randn(200, 256), torch.randn(256, 256))         # medium weight, enough rows
        F.linear(torch.randn(2, 512), torch.randn(512, 512))           # large weight: any rows
    assert routed == [(200, 256), (2, 512)]


def test_auto_leaves_small_models_alone_and_aten_is_the_model_itself():
    small = tiny_model('videopose')
    assert accelerate(small, InferenceConfig()) is small  # no weight worth oneDNN's call cost
    assert accelerate(small, InferenceConfig(cpu_kernels='aten')) is small
    wide = tiny_model('mixste', embed_dim=256, num_heads=4)
    fast = accelerate(wide, InferenceConfig())
    assert isinstance(fast, AcceleratedLifter) and fast.record['cpu_kernels'] == 'onednn'
    assert accelerate(wide, InferenceConfig(cpu_kernels='aten')) is wide
