"""Progress output: plain lines when redirected, the long-CPU-run forecast, distinct log names."""
import argparse
import io
import os

import pytest

import common.progress
from common.cli.runner import ScriptPreset, default_log_dir
from common.progress import PlainProgress, long_run_warning, progress
from helpers_data import run_inprocess, tiny_args, write_tiny_h36m


def test_plain_lines_every_tenth_without_carriage_returns():
    stream = io.StringIO()
    assert list(progress(range(20), 'epoch 1', stream=stream, unit='step')) == list(range(20))
    lines = stream.getvalue().splitlines()
    assert '\r' not in stream.getvalue() and len(lines) == 10
    assert lines[0].startswith('epoch 1: 2/20 (10%), ') and ' step/s' in lines[0]
    assert lines[-1].startswith('epoch 1: 20/20 (100%), ') and lines[-1].endswith('0:00:00 left')


def test_plain_lines_resume_from_the_initial_step():
    stream = io.StringIO()
    bar = PlainProgress(iter(range(5)), 'epoch 2', total=10, initial=5, stream=stream)
    list(bar)
    lines = stream.getvalue().splitlines()
    assert [line.split(' (')[0] for line in lines] == [f'epoch 2: {n}/10' for n in range(6, 11)]


def test_disabled_progress_is_the_iterable_itself():
    items = [1, 2, 3]
    assert progress(items, 'x', enabled=False) is items


def test_long_cpu_run_forecast():
    line = long_run_warning(1.5, 400, 80, 'cpu', '; try a smaller recipe')
    assert line == ('WARNING: on this CPU the training alone will take about 13.3 h '
                    '(1.50 s per step x 400 steps x 80 epochs); try a smaller recipe')
    assert long_run_warning(1.5, 400, 80, 'cuda') is None       # GPUs are not forecast
    assert long_run_warning(0.1, 400, 80, 'cpu') is None        # 53 min: no warning


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('progress') / 'data')


def test_training_warns_once_when_the_forecast_is_long(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(common.progress, 'LONG_RUN_S', 0.0)
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck', epochs=2, batch=4, steps=6))
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith('WARNING: on this CPU')]
    assert len(warnings) == 1 and 'x 6 steps x 2 epochs' in warnings[0] and '--recipe cpu_' in warnings[0]
    # stderr is not a terminal here: the progress is plain lines, no carriage returns
    assert '\r' not in err and 'epoch 1: 6/6 (100%)' in err and 'epoch 2: 6/6 (100%)' in err


def test_short_training_does_not_warn(tiny_data, tmp_path):
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck', epochs=1, batch=4, steps=6))
    assert code == 0, err
    assert 'WARNING: on this CPU' not in out


@pytest.mark.parametrize('script, dataset, expected', [
    ('h36m', 'h36m', 'h36m_stmo_'), ('h36m', 'synthetic', 'h36m_synthetic_stmo_'),
    ('3dhp', 'synthetic', '3dhp_synthetic_stmo_'), ('3dhp', 'mpii3d', '3dhp_mpii3d_stmo_')])
def test_log_names_tell_the_datasets_apart(script, dataset, expected):
    args = argparse.Namespace(nolog=False, log=None, dataset=dataset)
    path = default_log_dir(args, 'stmo', ScriptPreset(script='x.py', dataset=script, description=''))
    assert os.path.dirname(path) == 'log' and os.path.basename(path).startswith(expected)
    assert default_log_dir(argparse.Namespace(nolog=False, log='mine', dataset=dataset), 'stmo',
                           ScriptPreset(script='x.py', dataset=script, description='')) == 'mine'


def test_training_says_where_everything_went(tiny_data, tmp_path):
    log = tmp_path / 'log'
    argv = [a for a in tiny_args(tiny_data, tmp_path / 'ck', epochs=1, batch=8, steps=2) if a != '--nolog']
    code, out, err = run_inprocess([*argv, '-l', log])
    assert code == 0, err
    assert f"INFO: checkpoints in {tmp_path / 'ck'}: latest.pt, best.pt; log, tensorboard and results in {log}" in out
    assert (log / 'results.json').is_file() and (log / 'log.txt').is_file()
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck0', epochs=0))
    assert code == 0, err
    assert 'INFO: no checkpoint written' in out and 'checkpoints in' not in out
