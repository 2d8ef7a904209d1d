"""torchrun DDP on CPU (gloo): sharded training and evaluation, rank-0-only output, and ranks
that exit or hang make the others fail fast instead of waiting forever."""
import json
import math
import subprocess
import time

import pytest
import torch

from common.train.checkpoint import read_checkpoint
from helpers_data import (ROOT, run_inprocess, single_thread, subprocess_env, tiny_args,  # noqa: F401
                          torchrun_command, write_tiny_h36m)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed unavailable')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('data'))


def assert_results_close(a, b, rel=1e-9, where='results'):
    """Nested dicts/lists of evaluation results agree: floats to ``rel`` (two processes reduce
    in another order: an SVD may differ in its last bit), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_results_close(a[key], b[key], rel, f'{where}[{key!r}]')
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_results_close(x, y, rel, f'{where}[{index}]')
    elif isinstance(a, float) or isinstance(b, float):
        assert not isinstance(a, bool) and not isinstance(b, bool), (where, a, b)
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (where, a, b)
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=0.0), (where, a, b)
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def torchrun(argv, faults=(), timeout=600):
    start = time.time()
    done = subprocess.run(torchrun_command(argv, faults=faults), capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(1), cwd=ROOT)
    return done, time.time() - start


def test_two_process_training_matches_single_process(data_dir, tmp_path):
    ddp_dir, single_dir = tmp_path / 'ddp', tmp_path / 'single'
    done, _ = torchrun(tiny_args(data_dir, ddp_dir, '--results-json', tmp_path / 'ddp.json', epochs=1, batch=64))
    assert done.returncode == 0, done.stderr[-2000:]
    # only rank 0 prints
    assert done.stdout.count('INFO: model videopose') == 1 and done.stdout.count('[1] lr') == 1
    state = read_checkpoint(str(ddp_dir / 'latest.pt'))
    assert state['world_size'] == 2 and len(state['rng']) == 2
    assert not any(k.startswith('module.') or k.startswith('model.') for k in state['model'])

    # evaluation sharded over two ranks == one process evaluating the same checkpoint
    code, _, err = run_inprocess(tiny_args(data_dir, ddp_dir, '--evaluate', 'latest.pt',
                                           '--results-json', tmp_path / 'single_eval.json'))
    assert code == 0, err
    sharded = json.load(open(tmp_path / 'ddp.json'))
    single = json.load(open(tmp_path / 'single_eval.json'))
    for key in ('mpjpe', 'p_mpjpe', 'n_mpjpe', 'mpjve', 'per_action', 'frame_weighted'):
        assert_results_close(sharded[key], single[key], where=key)

    # the same global batch in one process: a close training loss after one epoch
    code, _, err = run_inprocess(tiny_args(data_dir, single_dir, epochs=1, batch=64))
    assert code == 0, err
    ddp_loss = state['history'][0]['train_loss']
    single_loss = read_checkpoint(str(single_dir / 'latest.pt'))['history'][0]['train_loss']
    assert ddp_loss == pytest.approx(single_loss, rel=0.05)


def _assert_failed_fast(done, seconds, limit):
    assert done.returncode != 0
    assert seconds < limit, f'took {seconds:.0f} s'
    lines = [line for line in done.stderr.splitlines() if line.startswith('error: rank 0')]
    assert len(lines) == 1 and 'distributed training failed' in lines[0], done.stderr[-2000:]
    return lines[0]


def test_a_rank_that_exits_makes_the_others_fail_quickly(data_dir, tmp_path):
    """Rank 1 leaves (status 0) at its 3rd step: rank 0 sees the closed connection and stops
    with a one-line error instead of waiting, long before the collective timeout (900 s; the
    limit is wide for a loaded machine: a few seconds when idle)."""
    argv = tiny_args(data_dir, tmp_path / 'ck', '--ddp-timeout', 900, epochs=1)
    done, seconds = torchrun(argv, faults=('--exit-rank', 1, '--exit-step', 3))
    _assert_failed_fast(done, seconds, limit=300)


def test_a_rank_that_hangs_hits_the_collective_timeout(data_dir, tmp_path):
    """Rank 1 sleeps forever at its 3rd step: rank 0's collective fails after --ddp-timeout
    (30 s: short, yet longer than a loaded machine keeps one rank behind the other before the
    hang, so that rank 0 is the one that times out, at the hang)."""
    argv = tiny_args(data_dir, tmp_path / 'ck', '--ddp-timeout', 30, epochs=1)
    done, seconds = torchrun(argv, faults=('--hang-rank', 1, '--exit-step', 3))
    line = _assert_failed_fast(done, seconds, limit=300)
    assert 'Timed out' in line or 'timed out' in line
