"""Fast inference for any registered lifter: a precision (fp32, bf16) and a backend (eager,
torch.compile, ONNX Runtime) chosen per run, behind the same interface as the lifter itself.

``accelerate(model, InferenceConfig(...))`` returns an :class:`AcceleratedLifter`: ``forward``
runs one window batch ([B, F, J, 2] -> [B, F_out, J, 3], F the receptive field, any B) on the
chosen backend, ``predict_sequence`` predicts whole sequences the model's own way with that
forward, and every other attribute is the lifter's. The first window batch of a run is also
computed eagerly in fp32 and the largest difference is kept (``first_batch_difference_mm``, also in
``record``);
beyond the tolerance one warning line says so.

bf16 stores the weights of the linear and convolution layers in bf16 and feeds them bf16 inputs
(the kernels accumulate in fp32); their outputs, the residual stream, norms, softmax, attention,
retention and its decay stay fp32, as do the first and the last layer (bf16's 8-bit mantissa would
round the 2D input to about a pixel and the 3D output to about a millimetre).

Eager inference on the CPU runs its fp32 products of activations with weights on oneDNN
(common/eval/cpu_kernels.py: faster than ATen's MKL path, fp32 all the same); ``cpu_kernels='aten'``
keeps ATen's.
"""
import contextlib
import copy
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.data.pose_codec import unit_scale
from common.errors import UserError
from common.eval import cpu_kernels
from common.export import OnnxRuntimeForward, example_inputs, export_onnx  # noqa: F401 (example_inputs: API)

PRECISIONS = ('fp32', 'bf16')
BACKENDS = ('eager', 'compile', 'onnxruntime')
CPU_KERNELS = ('auto', 'onednn', 'aten')
# first-batch check: largest allowed |backend - eager fp32| in mm, per precision
TOLERANCE_MM = {'fp32': 0.1, 'bf16': 20.0}


@dataclass(frozen=True)
class InferenceConfig:
    """precision -- 'fp32' or 'bf16'; backend -- 'eager', 'compile' (torch.compile, inductor)
    or 'onnxruntime' (the CPU provider, CUDA's when present); compiler -- torch.compile's
    backend ('inductor'; 'aot_eager' captures the same graph without generating code);
    tolerance_mm -- first-batch check (default by precision); cpu_kernels -- eager on the CPU:
    'auto' (large fp32 products on oneDNN, when this torch has it and the model has such
    products), 'onednn' (every fp32 product on oneDNN) or 'aten' (ATen's, as in training)."""
    precision: str = 'fp32'
    backend: str = 'eager'
    compiler: str = 'inductor'
    tolerance_mm: Optional[float] = None
    cpu_kernels: str = 'auto'

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision '{self.precision}': choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend '{self.backend}': choose one of {', '.join(BACKENDS)}")
        if self.cpu_kernels not in CPU_KERNELS:
            raise UserError(f"unknown CPU kernels '{self.cpu_kernels}': choose one of {', '.join(CPU_KERNELS)}")
        if self.backend == 'onnxruntime' and self.precision != 'fp32':
            raise UserError('ONNX Runtime runs fp32 here (its CPU provider has no bf16 matrix kernels): use '
                            '--precision fp32 with --backend onnxruntime, or --backend eager / compile for bf16')

    def onednn_on(self, model) -> bool:
        """Whether eager inference of ``model`` sends fp32 products to oneDNN."""
        return (self.backend == 'eager' and self.cpu_kernels != 'aten' and _device_of(model).type == 'cpu'
                and cpu_kernels.available() and (self.cpu_kernels == 'onednn' or cpu_kernels.worth_it(model)))

    @property
    def tolerance(self) -> float:
        return TOLERANCE_MM[self.precision] if self.tolerance_mm is None else self.tolerance_mm


def _device_of(model):
    return next((p.device for p in model.parameters()), torch.device('cpu'))


def _bf16_forward(module):
    """``module``'s forward with its weights stored once in bf16: inputs cast to bf16, the
    products accumulated in fp32 by the bf16 kernels, the output back in fp32."""
    weight = module.weight.detach().to(torch.bfloat16)
    bias = None if module.bias is None else module.bias.detach().to(torch.bfloat16)
    if isinstance(module, nn.Linear):
        return lambda x: F.linear(x.to(torch.bfloat16), weight, bias).float()
    return lambda x: module._conv_forward(x.to(torch.bfloat16), weight, bias).float()


def bf16_copy(model):
    """A copy of ``model`` whose linear and convolution layers run in bf16, except the first
    and the last (the 2D input and the 3D output keep fp32's resolution). Everything between
    the layers -- residual sums, norms, softmax and attention, retention and its decay -- stays
    fp32, and so does any weight a model applies by itself (RetNet's fused projections)."""
    model = copy.deepcopy(model)
    layers = []  # in the order one forward pass calls them: the first reads the input, the last writes the output
    hooks = [m.register_forward_pre_hook(lambda m, _: layers.append(m) if m not in layers else None)
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(*[t.to(_device_of(model)) if torch.is_tensor(t) else [m.to(_device_of(model)) for m in t]
                    for t in example_inputs(model, 1)])
    finally:
        for hook in hooks:
            hook.remove()
    for module in layers[1:-1]:
        module.forward = _bf16_forward(module)
    return model


def onnxruntime_forward(model):
    """Export ``model``'s window forward to a temporary ONNX file and open it in a session (which
    holds the graph in memory: the file is removed)."""
    with tempfile.TemporaryDirectory(prefix='unilift_onnx_') as directory:
        path = os.path.join(directory, 'window.onnx')
        export_onnx(model, path)
        return OnnxRuntimeForward(path)


class AcceleratedLifter(nn.Module):
    """A lifter behind a precision and a backend; every attribute not defined here is the
    lifter's own (receptive field, layouts, unit, refiner, ...)."""

    def __init__(self, lifter, config: InferenceConfig, announce=print):
        super().__init__()
        self.lifter = lifter.eval()
        self.config = config
        self.announce = announce
        # what the results JSON records; the first-batch check fills in the difference
        onednn = config.onednn_on(lifter)
        every_size = config.cpu_kernels == 'onednn'
        self.record = {'precision': config.precision, 'backend': config.backend,
                       'cpu_kernels': 'onednn' if onednn else 'aten', 'first_batch_difference_mm': None}
        self._sequence_note_done = False
        self._forward_called = False
        self._kernels = cpu_kernels.OneDnnProducts(every_size) if onednn else None
        runner = bf16_copy(lifter) if config.precision == 'bf16' else lifter
        if onednn and config.precision == 'fp32':
            runner = cpu_kernels.with_fused_gelu(runner, every_size)
        self._runner = [runner]  # a list: not a submodule (the state dict stays the lifter's)
        if config.backend == 'compile':
            self._window = torch.compile(runner.forward, backend=config.compiler, dynamic=True)
        elif config.backend == 'onnxruntime':
            self._window = onnxruntime_forward(lifter)
        else:
            self._window = runner.forward

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules['lifter'], name)

    def _precision(self):
        """The context of every pass: no autocast (bf16 lives in the layers of bf16_copy), and
        oneDNN's fp32 products for eager on the CPU."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(_device_of(self.lifter).type, enabled=False))
        if self._kernels is not None:
            stack.enter_context(self._kernels)
        return stack

    def _checked_window(self, *inputs):
        """The window forward on the backend, called within ``_precision``; the first call is
        compared with the lifter's own eager fp32 forward on ATen's kernels."""
        self._forward_called = True
        out = self._window(*inputs).float()
        if self.record['first_batch_difference_mm'] is None and (self.config.backend != 'eager'
                                                                 or self.config.precision != 'fp32'):
            with self._kernels.paused() if self._kernels is not None else contextlib.nullcontext():
                reference = type(self.lifter).forward(self.lifter, *inputs)
            gap = (out - reference).abs().max().item() * 1000 / unit_scale(self.lifter)
            self.record['first_batch_difference_mm'] = gap
            if gap > self.config.tolerance:
                self.announce(f'WARNING: --backend {self.config.backend} --precision {self.config.precision} '
                              f'differs from eager fp32 by {gap:.3g} mm on the first batch (tolerance '
                              f'{self.config.tolerance:g} mm)')
        return out

    @torch.no_grad()
    def forward(self, *inputs):
        """One window batch on the backend: the lifter's forward arguments -> [B, F_out, J, 3]."""
        with self._precision():
            return self._checked_window(*inputs)

    @torch.no_grad()
    def predict_sequence(self, x, max_batch=1024):
        """Whole sequences [B, T, J, 2] -> [B, T, J, 3] the lifter's own way, its window forward
        on the backend. A model whose sequence form is not made of windows (dilated convolutions
        over the whole sequence, chunkwise retention) keeps that form eager in this precision."""
        runner = self._runner[0]
        self._forward_called = False
        runner.forward = self._checked_window
        shared = runner.shares_frame_features
        runner.shares_frame_features = shared and self.config.backend == 'eager'
        try:
            with self._precision():
                out = type(runner).predict_sequence(runner, x, max_batch).float()
        finally:
            del runner.forward
            runner.shares_frame_features = shared
        if not self._forward_called and self.config.backend != 'eager' and not self._sequence_note_done:
            self._sequence_note_done = True
            self.announce(f'INFO: {self.lifter.model_name} predicts whole sequences in a form of its own, not '
                          f'window by window: --backend {self.config.backend} applies to its window forward '
                          f'(export, streaming), its sequences run eager in {self.config.precision}')
        return out

    @property
    def first_batch_difference_mm(self):
        """max |backend - eager fp32| on the first window batch, mm (None before it ran)."""
        return self.record['first_batch_difference_mm']


def accelerate(model, config: InferenceConfig, announce=None):
    """An AcceleratedLifter; ``model`` itself for eager fp32 on ATen's kernels (nothing to change)."""
    if config.backend == 'eager' and config.precision == 'fp32' and not config.onednn_on(model):
        return model
    if config.precision == 'bf16' and _device_of(model).type == 'cpu' and not torch.backends.mkldnn.is_available():
        raise UserError('--precision bf16 on this CPU needs oneDNN (torch.backends.mkldnn), which this torch lacks')
    return AcceleratedLifter(model, config, announce or (lambda line: print(line, file=sys.stderr, flush=True)))
