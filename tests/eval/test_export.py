"""Export (common/export.py): every registered lifter to ONNX and TorchScript, reloaded with the
same outputs on another batch size and its record in the file; the causal RetNet's recurrent
step export equals the parallel form."""
import json
import os

import onnxruntime
import pytest
import torch
from torch.utils._pytree import tree_flatten

from common.errors import UserError
from common.eval.backends import example_inputs
from common.export import RECORD_KEY, export_model, export_step, load_exported, step_path
from inference_models import every_lifter, tiny_model, tolerance
from models import build_model


@every_lifter
@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
def test_an_exported_lifter_reloads_with_the_same_outputs_and_its_record(name, fmt, tmp_path):
    model = tiny_model(name)
    path = str(tmp_path / f'{name}.{"onnx" if fmt == "onnx" else "pt"}')
    assert export_model(model, fmt, path) == [path]
    exported = load_exported(path)
    inputs = example_inputs(model, 5, seed=3)  # another batch size than the traced one
    with torch.no_grad():
        expected = model(*inputs)
    assert torch.allclose(exported(*tree_flatten(inputs)[0]), expected, atol=tolerance(name), rtol=0)
    record = exported.record
    assert record['model'] == name and record['kind'] == 'window'
    assert record['receptive_field'] == model.receptive_field and record['output_unit'] == model.output_unit
    assert record['predicts'] == model.predicts and record['input_layout'] == model.input_layout
    assert record['inputs'][0]['shape'][0] == 'batch'
    rebuilt = build_model(record['model'], **record['model_config'])  # the record alone rebuilds it
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


def test_a_plain_onnxruntime_session_reads_the_record(tmp_path):
    model = tiny_model('mixste')
    path = str(tmp_path / 'mixste.onnx')
    export_model(model, 'onnx', path)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    record = json.loads(session.get_modelmeta().custom_metadata_map[RECORD_KEY])
    assert record['model'] == 'mixste' and record['model_config']['embed_dim'] == 16
    x = example_inputs(model, 1)[0]
    out = session.run(None, {record['inputs'][0]['name']: x.numpy()})[0]
    assert out.shape == (1, 9, 17, 3) and abs(out - model(x).detach().numpy()).max() < 1e-4


@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
def test_the_causal_retnet_streams_its_exported_step_as_the_parallel_form(fmt, tmp_path):
    model = tiny_model('retnet', causal=True)
    path = str(tmp_path / f'causal.{"onnx" if fmt == "onnx" else "pt"}')
    written = export_model(model, fmt, path)
    assert written == [path, step_path(path)] and step_path(path).endswith(f'.step{os.path.splitext(path)[1]}')
    step = load_exported(written[1])
    assert step.record['kind'] == 'recurrent_step' and len(step.record['inputs']) == 1 + len(model.TTEblocks)
    clip = torch.rand(2, 9, 17, 2) - 0.5
    with torch.no_grad():
        parallel = model(clip)
    state, frames = step.init_state(2), []
    for t in range(clip.shape[1]):
        pose, state = step.step(clip[:, t], state)
        frames.append(pose)
    assert torch.allclose(torch.stack(frames, 1), parallel, atol=1e-4, rtol=0)


def test_only_causal_models_export_a_step(tmp_path):
    with pytest.raises(UserError, match='no recurrent step'):
        export_step(tiny_model('retnet'), str(tmp_path / 'x.onnx'))


def test_a_failed_export_leaves_the_old_file_and_bad_files_are_named(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_text('old')
    with pytest.raises(UserError, match='onnx or torchscript|choose one of'):
        export_model(tiny_model('videopose'), 'tflite', str(path))
    assert path.read_text() == 'old' and sorted(os.listdir(tmp_path)) == ['model.onnx']
    with pytest.raises(UserError, match='no exported model'):
        load_exported(str(tmp_path / 'missing.onnx'))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / 'foreign.pt'))
    with pytest.raises(UserError, match='not exported by this program'):
        load_exported(str(tmp_path / 'foreign.pt'))


def test_cpu_inference_in_passes_does_not_fix_the_exported_batch(tmp_path, monkeypatch):
    """Paper-sized windows (243 x 17 tokens) run one window per pass on the CPU; the exported
    graph must still take any batch (found when exporting MixSTE-243)."""
    import models.blocks
    monkeypatch.setattr(models.blocks, 'CPU_INFERENCE_TOKENS', 9 * 17)  # one tiny window per pass
    model = tiny_model('mixste')
    path = str(tmp_path / 'mixste.onnx')
    export_model(model, 'onnx', path)
    x = example_inputs(model, 3, seed=2)[0]
    with torch.no_grad():
        assert torch.allclose(load_exported(path)(x), model(x), atol=1e-4, rtol=0)
