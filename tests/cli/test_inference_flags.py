"""--precision, --backend and --export on the command line: evaluation runs with them, results
JSON records them, the export writes a file and stops, wrong uses are one-line errors."""
import json

import pytest

from common.export import load_exported
from helpers_data import run_inprocess, tiny_args, write_tiny_h36m

MIXSTE = ('--model', 'mixste', '-f', '9', '-cs', '16', '-dep', '1')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('inference_flags')
    data = write_tiny_h36m(root / 'data', frames=60)
    code, _, err = run_inprocess([*tiny_args(data, root / 'ck', epochs=1, batch=8, steps=2), *MIXSTE])
    assert code == 0, err
    return data, root


def evaluate(trained, *flags):
    data, root = trained
    result = root / f'r{len(list(root.glob("r*.json")))}.json'
    code, out, err = run_inprocess([*tiny_args(data, root / 'ck'), '--evaluate', 'latest.pt',
                                    '--results-json', result, *flags])
    return code, out, err, json.loads(result.read_text()) if code == 0 and result.exists() else None


def test_onnxruntime_and_bf16_evaluations_match_eager(trained):
    code, _, err, eager = evaluate(trained)
    assert code == 0, err
    code, _, err, onnx = evaluate(trained, '--backend', 'onnxruntime')
    assert code == 0 and 'WARNING' not in err, err
    assert abs(onnx['mpjpe'] - eager['mpjpe']) < 1e-3
    assert onnx['config']['inference']['backend'] == 'onnxruntime'
    assert onnx['config']['inference']['first_batch_difference_mm'] < 0.1
    code, _, err, bf16 = evaluate(trained, '--precision', 'bf16')
    assert code == 0, err
    assert abs(bf16['mpjpe'] - eager['mpjpe']) < 1.0 and bf16['config']['inference']['precision'] == 'bf16'
    assert 'inference' not in eager['config']  # eager fp32 results are as they always were


def test_export_writes_the_file_with_its_record_and_stops(trained):
    data, root = trained
    path = root / 'exported' / 'mixste.onnx'
    code, out, err, results = evaluate(trained, '--export', 'onnx', path)
    assert code == 0, err
    assert f'exported to {path}' in out and results is None  # no evaluation ran
    record = load_exported(str(path)).record
    assert record['model'] == 'mixste' and record['receptive_field'] == 9 and record['model_config']['depth'] == 1


@pytest.mark.parametrize('flags, message', [
    (('--export', 'tflite', 'x.tflite'), 'the format is onnx or torchscript'),
    (('--backend', 'onnxruntime', '--precision', 'bf16'), '--precision fp32 with --backend onnxruntime'),
    (('--backend', 'tensorrt'), "invalid choice: 'tensorrt'"),
])
def test_wrong_inference_flags_are_one_line_errors(trained, flags, message):
    code, _, err, _ = evaluate(trained, *flags)
    assert code == 2 and err.count('\n') == 1 and message in err, err


def test_training_refuses_the_inference_flags(trained, tmp_path):
    data, _ = trained
    code, _, err = run_inprocess([*tiny_args(data, tmp_path / 'ck', epochs=1), '--backend', 'compile'])
    assert code == 2 and err.count('\n') == 1 and 'apply to evaluation and rendering' in err
    assert not (tmp_path / 'ck').exists()


def test_help_explains_the_inference_flags(capsys):
    from common.cli.arguments import build_parser
    text = build_parser('render.py', viz=True).format_help()
    assert all(flag in text for flag in ('--precision', '--backend', '--export FORMAT FILE', 'inference'))


def test_render_exports_without_a_sequence_to_render(trained, capsys):
    import render
    data, root = trained
    path = root / 'rendered' / 'mixste.pt'
    code = render.main(['-d', 'h36m', '-k', 'gt', '--root_path', str(data), '-str', 'S1', '-ste', 'S9',
                        '-c', str(root / 'ck'), '--evaluate', 'latest.pt', '--export', 'torchscript', str(path)])
    assert code == 0 and load_exported(str(path)).record['model'] == 'mixste'
    assert f'exported to {path}' in capsys.readouterr().out
