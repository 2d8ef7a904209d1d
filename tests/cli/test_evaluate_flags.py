"""Evaluating one's own checkpoint with a published command's flags: the file decides the
architecture, flags that only change how it runs (--chunk-size) apply."""
import json

import pytest

from helpers_data import run_inprocess, tiny_args, write_tiny_h36m

RETNET = ('--model', 'retnet', '--joint-related', '--uncausal')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('evaluate_flags')
    data = write_tiny_h36m(root / 'data')
    argv = [*tiny_args(data, root / 'ck', epochs=1, batch=8, steps=2), *RETNET, '-f', '9', '-cs', '16',
            '-dep', '1', '--chunk-size', '9']
    code, _, err = run_inprocess(argv)
    assert code == 0, err
    return data, root


def test_published_flags_evaluate_the_small_trained_model(trained):
    data, root = trained
    result = root / 'r.json'
    code, out, err = run_inprocess([*tiny_args(data, root / 'ck'), *RETNET, '--chunk-size', '3',
                                    '--evaluate', 'latest.pt', '--results-json', result])
    assert code == 0, err
    config = json.loads(result.read_text())['config']['model_config']
    assert config['embed_dim'] == 16 and config['depth'] == 1 and config['chunk_size'] == 3
    assert '0.0' in out.split('INFO: model retnet (', 1)[1][:6]  # a few thousand parameters, not 35.75M


def test_a_contradicting_flag_is_named(trained):
    data, root = trained
    code, _, err = run_inprocess([*tiny_args(data, root / 'ck'), *RETNET, '-dep', '3', '--evaluate', 'latest.pt'])
    assert code == 2 and err.count('\n') == 1 and 'depth=1' in err and 'depth=3' in err


def test_evaluation_without_a_log_flag_writes_its_results_json(trained, tmp_path, monkeypatch):
    data, root = trained
    monkeypatch.chdir(tmp_path)
    argv = [a for a in tiny_args(data, root / 'ck') if a != '--nolog']
    code, out, err = run_inprocess([*argv, '--evaluate', 'latest.pt'])
    assert code == 0, err
    written = list((tmp_path / 'log').glob('*/results.json'))
    assert len(written) == 1 and f'INFO: results written to {written[0].relative_to(tmp_path)}' in out
    assert json.loads(written[0].read_text())['mpjpe'] > 0
