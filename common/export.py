"""Export a lifter's window forward (and a causal RetNet's recurrent step) to ONNX or
TorchScript, with the model's record in the file, and load such files back.

The window has the receptive field's length and a dynamic batch: [B, F, J, 2] -> [B, F_out, J, 3]
in the model's ``output_unit``. The record (name, config, layouts, unit, receptive field, what
it predicts, input and output names) is the JSON string ``unilift_record``: ONNX keeps it in the
model's ``metadata_props`` (a plain ``onnxruntime`` session reads it from
``session.get_modelmeta().custom_metadata_map``), TorchScript in the archive's extra files.
"""
import json
import os
import warnings
from typing import List

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from common.errors import UserError

def example_inputs(model, batch=2, seed=0):
    """Arguments of one forward pass of ``model`` for ``batch`` windows, seeded: the model's own
    ``Lifter.example_inputs`` (keypoints; image features or refine inputs where it takes those)."""
    return tuple(model.example_inputs(batch, torch.Generator().manual_seed(seed)))


class OnnxRuntimeForward:
    """An exported window forward in an ONNX Runtime session: tensors in, a tensor out, on
    the device of the inputs."""

    def __init__(self, path, threads=None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # errors reach the caller as exceptions; no extra log lines
        providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider') if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs):
        from torch.utils._pytree import tree_flatten
        flat, _ = tree_flatten(inputs)
        device = flat[0].device
        feeds = {name: t.detach().float().cpu().numpy() for name, t in zip(self.names, flat)}
        return torch.from_numpy(self.session.run(None, feeds)[0]).to(device)



RECORD_KEY = 'unilift_record'
FORMATS = ('onnx', 'torchscript')
ONNX_OPSET = 18  # grid_sample (Context-Aware PoseFormer) needs 16 or later
EXPORT_TOLERANCE = 1e-3  # largest |file - eager| relative to the output size: catches a mistranslated graph


class FlatInputs(nn.Module):
    """``model``'s forward taking its arguments as one flat list of tensors (feature-map lists
    become separate inputs), so that exported graphs have plain named inputs."""

    def __init__(self, model, spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, *flat):
        return self.model(*tree_unflatten(list(flat), self.spec))


class RecurrentStep(nn.Module):
    """A causal model's ``step``: (frame [B, J, 2], state_0 ... state_{L-1}) -> (pose [B, J, 3],
    new state_0 ... new state_{L-1}), each state [B, J, H, d, d]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):  # one flat argument list, as FlatInputs (export's dynamic shapes)
        pose, new_state = self.model.step(inputs[0], list(inputs[1:]))
        return (pose, *new_state)


def model_record(model, kind='window', inputs=(), outputs=()) -> dict:
    """What a file of ``model`` takes and gives: JSON-ready."""
    config = getattr(model, 'model_config', {}) or {}
    return {'model': model.model_name, 'model_config': json.loads(json.dumps(config, default=str)),
            'kind': kind, 'predicts': model.predicts, 'receptive_field': int(model.receptive_field),
            'frame_step': int(model.frame_step), 'causal_shift': int(model.causal_shift),
            'input_layout': model.input_layout, 'output_layout': model.output_layout,
            'output_unit': model.output_unit, 'inputs': list(inputs), 'outputs': list(outputs)}


def _shapes(names, tensors, batch_axis=True):
    return [{'name': n, 'shape': ['batch' if i == 0 and batch_axis else s for i, s in enumerate(t.shape)]}
            for n, t in zip(names, tensors)]


def _write(path, save):
    """``save(tmp)`` then rename over ``path``: a failed export leaves any old file as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write the export to '{path}': {err.strerror}") from None
    tmp = path + '.tmp'
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _prepared(model, args):
    """(module with flat inputs, flat example tensors, input names) after one eager pass
    (which fills the caches the traced graph reads its constants from)."""
    model = model.eval()
    device = next((p.device for p in model.parameters()), torch.device('cpu'))
    flat, spec = tree_flatten(tuple(args))
    flat = [t.to(device) for t in flat]
    with torch.no_grad():
        model(*tree_unflatten(flat, spec))
    names = ['keypoints'] if len(flat) == 1 else [f'input_{i}' for i in range(len(flat))]
    return FlatInputs(model, spec).eval(), flat, names  # eval: exporters restore the wrapper's mode on all


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _largest_gap(path, fmt, module, check):
    """max |file - eager| over every output, on inputs of another batch size than the traced
    ones (a graph that kept the traced batch fails here)."""
    with torch.no_grad():
        expected = _outputs(module(*check))
        if fmt == 'torchscript':
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)
                got = _outputs(torch.jit.load(path, map_location='cpu')(*[t.cpu() for t in check]))
        else:
            session = OnnxRuntimeForward(path).session
            feeds = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), check)}
            got = [torch.from_numpy(a) for a in session.run(None, feeds)]
    return max((g.float() - e.float().cpu()).abs().max().item() / max(1.0, e.abs().max().item())
               for g, e in zip(got, expected))


def _export_graph(module, flat, check, names, outputs, path, fmt, record):
    """Write ``module`` (flat tensor inputs) in ``fmt`` with ``record`` in it, checked on ``check``."""
    def trace_onnx(tmp):
        torch.onnx.export(module, tuple(flat), tmp, input_names=names, output_names=outputs,
                          dynamic_axes={n: {0: 'batch'} for n in names + outputs},
                          opset_version=ONNX_OPSET, dynamo=False)

    def program_onnx(tmp):
        batch = torch.export.Dim('batch', min=1, max=4096)
        program = torch.onnx.export(module, tuple(flat), input_names=names, output_names=outputs,
                                    dynamic_shapes=(tuple({0: batch} for _ in flat),),  # the *flat varargs
                                    opset_version=ONNX_OPSET, dynamo=True, verbose=False)
        program.save(tmp)

    def trace_torchscript(tmp):
        traced = torch.jit.trace(module, tuple(flat), check_trace=False)
        torch.jit.save(traced, tmp, _extra_files={RECORD_KEY + '.json': json.dumps(record)})

    def save(tmp):
        # the tracing exporter takes a fraction of a second but may mistranslate a graph; torch.export
        # (tens of seconds) is the fallback whenever the written file does not match eager
        exporters = [trace_onnx, program_onnx] if fmt == 'onnx' else [trace_torchscript]
        problem = None
        for exporter in exporters:
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter('ignore')
                    exporter(tmp)
                gap = _largest_gap(tmp, fmt, module, check)
            except Exception as err:  # noqa: BLE001 -- tried in turn, reported together below
                problem = f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
                continue
            if gap <= EXPORT_TOLERANCE:
                break
            problem = f'the written graph differs from the model by {gap:.2e}'
        else:
            raise UserError(f'cannot export {record["model"]} to {fmt}: {problem}')
        if fmt == 'onnx':
            import onnx
            graph = onnx.load(tmp)
            entry = graph.metadata_props.add()
            entry.key, entry.value = RECORD_KEY, json.dumps(record)
            onnx.save(graph, tmp)

    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    _write(path, save)
    return record


def export_window(model, path, fmt='onnx', batch=2):
    """Write ``model``'s window forward to ``path`` (fixed window, dynamic batch); the record."""
    module, flat, names = _prepared(model, example_inputs(model, batch))
    check = [t.to(flat[0].device) for t in tree_flatten(example_inputs(model, batch + 1, seed=1))[0]]
    with torch.no_grad():
        out = module(*flat)
    record = model_record(model, 'window', _shapes(names, flat), _shapes(['pose3d'], [out]))
    return _export_graph(module, flat, check, names, ['pose3d'], path, fmt, record)


def export_onnx(model, path, batch=2):
    return export_window(model, path, 'onnx', batch)


def export_torchscript(model, path, batch=2):
    return export_window(model, path, 'torchscript', batch)


def has_recurrent_step(model) -> bool:
    """Causal models with a per-frame ``step`` (the causal RetNet) also export it."""
    return bool(getattr(model, 'causal', False)) and callable(getattr(model, 'step', None)) \
        and callable(getattr(model, 'init_state', None))


def export_step(model, path, fmt='onnx', batch=2):
    """Write a causal model's recurrent step (state in, pose and state out) to ``path``."""
    if not has_recurrent_step(model):
        raise UserError(f'{model.model_name} has no recurrent step to export (only causal RetNet models do)')
    model = model.eval()
    joints = example_inputs(model, batch)[0].shape[2]
    frame = torch.rand(batch, joints, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    frame = frame.to(next(model.parameters()).device)
    state = model.init_state(batch)
    with torch.no_grad():
        pose, new_state = model.step(frame, state)  # also fills the one-frame tables the graph reads
        later = model.step(frame[:1] * 0.5, model.init_state(1))[1]  # a history, another batch size
    names = ['frame'] + [f'state_{i}' for i in range(len(state))]
    outputs = ['pose3d'] + [f'new_state_{i}' for i in range(len(state))]
    record = model_record(model, 'recurrent_step', _shapes(names, [frame, *state]),
                          _shapes(outputs, [pose, *new_state]))
    check = [frame[:1], *later]
    return _export_graph(RecurrentStep(model).eval(), [frame, *state], check, names, outputs, path, fmt, record)


def step_path(path) -> str:
    """Where ``--export FMT FILE`` puts the recurrent step of a causal model: FILE.step.EXT."""
    root, ext = os.path.splitext(path)
    return f'{root}.step{ext}'


def export_model(model, fmt, path) -> List[str]:
    """The window forward to ``path`` and, for causal models with a step, the step beside it;
    returns the paths written."""
    export_window(model, path, fmt)
    written = [path]
    if has_recurrent_step(model):
        export_step(model, step_path(path), fmt)
        written.append(step_path(path))
    return written


class ExportedModel:
    """An exported file, loaded: ``record`` says what it takes; calling it runs the graph
    (tensors in, tuple of tensors out for a step, one tensor for a window)."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise UserError(f"no exported model at '{path}'")
        self.path = path
        with open(path, 'rb') as handle:
            magic = handle.read(2)
        self.format = 'torchscript' if magic == b'PK' else 'onnx'
        if self.format == 'torchscript':
            extra = {RECORD_KEY + '.json': ''}
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; the files still load
                warnings.simplefilter('ignore', DeprecationWarning)
                self.module = torch.jit.load(path, map_location='cpu', _extra_files=extra)
            text = extra[RECORD_KEY + '.json']
        else:
            self.module = OnnxRuntimeForward(path)
            text = self.module.session.get_modelmeta().custom_metadata_map.get(RECORD_KEY)
        if not text:
            raise UserError(f"'{path}' holds no {RECORD_KEY}: it was not exported by this program")
        self.record = json.loads(text)

    def __call__(self, *inputs):
        if self.format == 'torchscript':
            with torch.no_grad():
                return self.module(*inputs)
        if self.record['kind'] == 'window':
            return self.module(*inputs)
        feeds = {n: t.detach().float().cpu().numpy() for n, t in zip(self.module.names, inputs)}
        return tuple(torch.from_numpy(a) for a in self.module.session.run(None, feeds))

    def init_state(self, batch):
        """Zero state for a recurrent step file: one tensor per state input."""
        return [torch.zeros([batch] + item['shape'][1:]) for item in self.record['inputs'][1:]]

    def step(self, frame, state):
        """One frame [B, J, 2] -> (pose [B, J, 3], new state), as the model's own ``step``."""
        pose, *new_state = self(frame, *state)
        return pose, list(new_state)


def load_exported(path) -> ExportedModel:
    """An ONNX or TorchScript file written by ``export_model`` (format read from the file)."""
    return ExportedModel(path)
