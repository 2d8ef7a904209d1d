"""fp32 dense products through oneDNN for CPU inference.

The lifters spend most of an inference pass in fp32 products of activations with weights (the
linear layers, kernel-1 convolutions applied as products, RetNet's fused projections). ATen runs
them on MKL's sgemm; oneDNN's fp32 kernel is faster on AVX-512 machines (a [4131, 512] x
[512, 2048] product: 64 ms against 52 ms on 2 EPYC cores) and can apply a GELU to its output
while the tile is still in cache (the separate GELU costs another 17 ms there). Both are fp32
throughout: the results differ from MKL's by summation order only (about 1e-6 relative).

oneDNN pays a fixed cost per call (about 20 us here) that MKL does not, so small products stay on
ATen: below a 256 x 256 weight, or below 128 rows for weights under 512 x 512 (measured crossovers).

``OneDnnProducts`` is a TorchFunctionMode that sends such products to oneDNN, whatever module
or function issues them; ``with_fused_gelu`` returns a copy of a model whose ``Mlp`` blocks apply
their GELU inside the first product.
"""
import contextlib
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from models.blocks import Mlp


def _linear_kernel():
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, '_linear_pointwise', None)


LINEAR = _linear_kernel()
MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__}
SMALL_WEIGHT = 256 * 256  # elements: below, ATen is as fast or faster at every size
MEDIUM_WEIGHT = 512 * 512  # below, oneDNN wins from MEDIUM_ROWS rows on
MEDIUM_ROWS = 128


def available() -> bool:
    """Whether this torch has oneDNN's fp32 linear kernel (x86 and ARM builds do)."""
    return LINEAR is not None


def worth_it(model) -> bool:
    """Whether ``model`` has a weight matrix large enough for oneDNN to pay."""
    return any(p.dim() >= 2 and p[0].numel() * p.shape[0] >= SMALL_WEIGHT for p in model.parameters())


def _routable(x, weight, every_size=False):
    """A product of an fp32 CPU activation [..., C_in] with an fp32 CPU weight matrix, outside
    autograd, of a size where oneDNN is faster (any size with ``every_size``)."""
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and x.dim() >= 2 and x.dtype == weight.dtype == torch.float32
            and x.device.type == weight.device.type == 'cpu' and not torch.is_grad_enabled()):
        return False
    size = weight.numel()
    return every_size or size >= MEDIUM_WEIGHT or (size >= SMALL_WEIGHT and x.numel() >= MEDIUM_ROWS * x.shape[-1])


class OneDnnProducts(TorchFunctionMode):
    """Within this mode, ``F.linear(x, W, b)`` and ``x @ W`` (W a matrix [C_in, C_out]) run on
    oneDNN when both are fp32 CPU tensors and no gradient is recorded; everything else, bf16
    layers and batched products of two activations included, runs as it would.

    every_size -- oneDNN for products of every size too (tests: equal outputs whatever the size)"""

    def __init__(self, every_size=False):
        super().__init__()
        self.enabled = True
        self.every_size = every_size

    @contextlib.contextmanager
    def paused(self):
        """ATen's kernels for a while (a reference pass inside the mode)."""
        self.enabled, before = False, self.enabled
        try:
            yield
        finally:
            self.enabled = before

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.enabled:
            return func(*args, **kwargs)
        if func is F.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs.get('weight')
            bias = args[2] if len(args) > 2 else kwargs.get('bias')
            if _routable(x, weight, self.every_size) and (bias is None or bias.dtype == torch.float32):
                return LINEAR(x, weight, bias, 'none', [], '')
        elif func in MATMULS and len(args) == 2 and not kwargs:
            x, weight = args
            if _routable(x, weight, self.every_size):
                return LINEAR(x, weight.t(), None, 'none', [], '')
        return func(*args, **kwargs)


def _fused_mlp_forward(mlp, every_size):
    """fc1 with its GELU in one oneDNN call, then fc2 (dropout is off in evaluation)."""
    fc1, fc2, approximate = mlp.fc1, mlp.fc2, mlp.act.approximate

    def forward(x):
        if not _routable(x, fc1.weight, every_size):
            return type(mlp).forward(mlp, x)
        return fc2(LINEAR(x, fc1.weight, fc1.bias, 'gelu', [], approximate))
    return forward


def with_fused_gelu(model, every_size=False):
    """A copy of ``model`` whose fp32 ``Mlp`` blocks with a GELU apply it inside their first
    product (when oneDNN pays at that size, or always with ``every_size``). Blocks whose layers
    were changed already (bf16) keep their forward."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if (isinstance(module, Mlp) and type(module.act) is nn.GELU and type(module.fc1) is nn.Linear
                and 'forward' not in vars(module.fc1)):
            module.forward = _fused_mlp_forward(module, every_size)
    return model
