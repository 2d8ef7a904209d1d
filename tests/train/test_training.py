"""Training engine: resume == uninterrupted (mid-epoch and after SIGKILLs), seeds, EMA,
gradient accumulation, DataLoader workers, bf16 autocast, non-finite losses, determinism."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import common.train.engine as engine
from common.train.checkpoint import read_checkpoint
from common.dist import DistInfo, configure_determinism
from common.train.engine import TrainConfig, TrainingObjective, make_loader, train_one_epoch
from common.train.optim import WeightEMA
from common.data.generators import WindowConfig, WindowDataset
from models.base import Lifter
from helpers_data import (ROOT, assert_same_weights, model_tensors, run_inprocess, run_script,  # noqa: F401
                          single_thread, subprocess_env, tiny_args, write_tiny_h36m)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('data'))


class Linear2Dto3D(Lifter):
    """A batch-independent lifter (no BatchNorm, no dropout): [B, F, J, 2] -> [B, F, J, 3]."""
    predicts, receptive_field = 'sequence', 1

    def __init__(self, joints=17):
        super().__init__()
        self.fc = nn.Linear(2 * joints, 3 * joints)

    def forward(self, x):
        return self.fc(x.flatten(2)).unflatten(2, (x.shape[2], 3))


def _windows(batch_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 1, 17, 2, generator=generator)
    y = torch.randn(batch_size, 1, 17, 3, generator=generator)
    return [{'input2d': x, 'target3d': y}]


def test_ema_matches_hand_computation():
    torch.manual_seed(0)
    model, decay = nn.Linear(3, 2), 0.9
    ema = WeightEMA(model, decay)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        expected = {k: decay * expected[k] + (1 - decay) * v for k, v in model.state_dict().items()}
    for key, value in ema.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_follows_optimiser_steps_in_training():
    torch.manual_seed(0)
    model = Linear2Dto3D()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    ema, decay = WeightEMA(model, 0.8), 0.8
    cfg = TrainConfig(accumulate=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    live = []
    batches = _windows(8, 1) + _windows(8, 2) + _windows(8, 3)
    train_one_epoch(TrainingObjective(model), optimizer, batches, cfg, torch.device('cpu'), 0, ema=ema,
                    on_step=lambda step, *_: live.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert len(live) == 3
    expected = initial
    for weights in live:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    for key, value in ema.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize('accumulate', [2, 4, 3])
def test_accumulation_equals_one_big_batch(accumulate):
    """N micro-batches of B/N windows give the gradient of one batch of B (SGD lr 1: the weight
    change is minus the gradient), also when B is not a multiple of N."""
    results = []
    for n in (1, accumulate):
        torch.manual_seed(0)
        model = Linear2Dto3D()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        loss = train_one_epoch(TrainingObjective(model), torch.optim.SGD(model.parameters(), lr=1.0),
                               _windows(32), TrainConfig(accumulate=n), torch.device('cpu'), 0)
        results.append(({k: before[k] - v for k, v in model.state_dict().items()}, loss))
    (grad_one, loss_one), (grad_acc, loss_acc) = results
    for key in grad_one:
        torch.testing.assert_close(grad_acc[key], grad_one[key], rtol=1e-5, atol=1e-7)
    assert loss_acc == pytest.approx(loss_one, rel=1e-6)  # float32 sums in another order


def test_window_order_and_contents_do_not_depend_on_workers(data_dir):
    from common.data.datasets import DataConfig, load_dataset
    train, _, spec = load_dataset(DataConfig(dataset='h36m', root_path=data_dir, keypoints='gt',
                                             subjects_train=['S1'], subjects_test=['S9']))
    dataset = WindowDataset(train, WindowConfig('seq2frame', frames=9, flip=True, seed=5),
                            spec.flip_pairs, spec.skeleton.flip_pairs)
    seen = {}
    for workers in (0, 2):
        cfg = TrainConfig(batch_size=100, workers=workers, seed=5)
        loader, sampler, _ = make_loader(dataset, cfg, DistInfo(), torch.device('cpu'))
        batches = []
        for epoch in range(2):  # the second epoch has other flips: workers must see them
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            batches += [(b['input2d'], b['target3d']) for b in loader]
        seen[workers] = batches
    assert len(seen[0]) == len(seen[2]) == 2 * 10
    for (x0, y0), (x2, y2) in zip(seen[0], seen[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(seen[0][0][0], seen[0][10][0])  # epochs differ


def test_seed_makes_training_bitwise_reproducible(data_dir, tmp_path):
    weights = []
    for run, seed in enumerate((3, 3, 4)):
        code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / f'ck{run}', '--seed', seed, steps=6))
        assert code == 0, err
        weights.append(model_tensors(tmp_path / f'ck{run}' / 'latest.pt'))
    assert_same_weights(weights[0], weights[1])
    assert not torch.equal(weights[0]['shrink.weight'], weights[2]['shrink.weight'])


def test_worker_count_does_not_change_training(data_dir, tmp_path):
    weights = []
    for workers in (0, 2):
        code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / f'ck{workers}', '--workers', workers,
                                               epochs=2, steps=4))
        assert code == 0, err
        weights.append(model_tensors(tmp_path / f'ck{workers}' / 'latest.pt'))
    assert_same_weights(*weights)


def test_deterministic_flag_turns_on_deterministic_algorithms(data_dir, tmp_path):
    try:
        code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'ck', '--deterministic', epochs=1, steps=2))
        assert code == 0, err
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    finally:
        configure_determinism(False)


class _StopAfterSaves:
    """Wraps engine.atomic_save: raises KeyboardInterrupt (Ctrl-C) after the n-th write."""

    def __init__(self, n):
        self.n, self.calls, self.original = n, 0, engine.atomic_save

    def __call__(self, obj, path):
        self.original(obj, path)
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


def test_resume_from_mid_epoch_checkpoint_equals_uninterrupted(data_dir, tmp_path, monkeypatch):
    extra = ('--checkpoint-steps', 4, '--ema', 0.9, '--accumulate', 2, '-drop', 0.25)
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'full', *extra, epochs=2, steps=10))
    assert code == 0, err

    broken = tmp_path / 'broken'
    # epoch 1 writes latest at steps 4 and 8, then latest, best and ema; the 6th write is step 4 of epoch 2
    monkeypatch.setattr(engine, 'atomic_save', _StopAfterSaves(6))
    code, _, err = run_inprocess(tiny_args(data_dir, broken, *extra, epochs=2, steps=10))
    assert code == 130 and 'interrupted' in err
    monkeypatch.undo()
    state = read_checkpoint(str(broken / 'latest.pt'))
    assert (state['epoch'], state['step']) == (1, 4)  # inside the second epoch

    code, out, err = run_inprocess(tiny_args(data_dir, broken, *extra, '--resume', broken / 'latest.pt',
                                             epochs=2, steps=10))
    assert code == 0, err
    assert 'resumed' in out
    full, resumed = read_checkpoint(str(tmp_path / 'full' / 'latest.pt')), read_checkpoint(str(broken / 'latest.pt'))
    assert_same_weights(full['model'], resumed['model'])
    assert_same_weights(full['ema_model'], resumed['ema_model'])
    assert [h['train_loss'] for h in full['history']] == [h['train_loss'] for h in resumed['history']]


def test_non_finite_loss_stops_with_the_step_and_saves_nothing_bad(data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'ck'
    code, _, err = run_inprocess(tiny_args(data_dir, checkpoint_dir, '-lr', '1e30', '--checkpoint-steps', 1,
                                           epochs=2, steps=10))
    assert code == 2
    message = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(message) == 1 and 'non-finite training loss' in message[0] and 'step' in message[0]
    assert 'Traceback' not in err
    for name in os.listdir(checkpoint_dir):
        assert name.endswith('.pt')
        for tensor in model_tensors(checkpoint_dir / name).values():
            assert torch.isfinite(tensor.float()).all()


def test_bf16_autocast_trains_on_cpu(data_dir, tmp_path):
    code, out, err = run_inprocess(tiny_args(data_dir, tmp_path / 'ck', '--amp', epochs=1, steps=4))
    assert code == 0, err
    loss = float(out.split('train loss ')[1].split()[0])
    assert np.isfinite(loss) and loss > 0


def test_ema_is_evaluated_and_saved_as_its_own_model(data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'ck'
    code, out, err = run_inprocess(tiny_args(data_dir, checkpoint_dir, '--ema', 0.5, epochs=1, steps=6))
    assert code == 0, err
    assert '(EMA ' in out
    ema, live = read_checkpoint(str(checkpoint_dir / 'ema.pt')), read_checkpoint(str(checkpoint_dir / 'latest.pt'))
    assert_same_weights(ema['model'], live['ema_model'])
    assert not torch.equal(ema['model']['shrink.weight'], live['model']['shrink.weight'])
    code, out, err = run_inprocess(tiny_args(data_dir, checkpoint_dir, '--evaluate', 'ema.pt'))
    assert code == 0, err
    assert f"{ema['results']['mpjpe']:.1f} mm" in out


def test_compile_smoke(data_dir, tmp_path):
    if not os.environ.get('UNILIFT_TEST_COMPILE'):
        pytest.skip('torch.compile builds C++ kernels for ~40 s on 2 CPU cores; set UNILIFT_TEST_COMPILE=1')
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'ck', '--compile', epochs=1, steps=2))
    assert code == 0, err


# ----------------------------------------------------------------------------- SIGKILL

def _partial_files(directory):
    return [n for n in os.listdir(directory) if n.endswith('.partial')]


def _assert_only_complete_checkpoints(directory):
    for name in os.listdir(directory):
        if name.endswith('.partial'):
            continue  # an unfinished write: never named *.pt, removed by the next start
        assert name.endswith('.pt'), name
        state = read_checkpoint(str(directory / name))
        assert state['model'] and all(torch.isfinite(v.float()).all() for v in state['model'].values())


def _landed(path):
    """Identity of the file now at ``path``: every checkpoint write lands by a rename, so a new
    write changes it (two writes inside one timestamp tick may look alike: then one is missed)."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _kill_at_random_moment(argv, latest, rng, timeout=600):
    """Start run.py and SIGKILL it at a random moment of its training, chosen by its observed
    progress, not by wall time: after a random number (2 to 4) of its checkpoint writes have
    landed, wait a random fraction of the time between its last two observed writes (mid-step or
    mid-write, wherever it happens to be), then kill. A slow or a fast machine alike: the run has
    made progress, and is far from its end (it writes latest.pt about 60 times). Returns its
    exit status (-SIGKILL unless it ended before the kill)."""
    writes, fraction = rng.randint(2, 4), rng.random()
    seen, landed_at = _landed(latest), [time.monotonic()]
    command = [sys.executable, os.path.join(ROOT, 'run.py'), *map(str, argv)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=subprocess_env(1), cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout  # minutes: a loaded machine is slow, never this slow
        while len(landed_at) <= writes and process.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f'run.py wrote {len(landed_at) - 1} of {writes} checkpoints in {timeout} s')
            now = _landed(latest)
            if now != seen:
                seen = now
                landed_at.append(time.monotonic())
            time.sleep(0.002)
        if process.poll() is None:
            # the pace of training between two writes (the first write's wait holds the start-up)
            time.sleep(fraction * min(landed_at[-1] - landed_at[-2], 1.0))
            process.send_signal(signal.SIGKILL)
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(data_dir, tmp_path):
    """SIGKILL inside a checkpoint write, then at random moments of resumed runs; every time
    the directory holds only complete checkpoints, and the last resume ends with the weights
    of an uninterrupted run (which runs in-process: same single-thread kernels)."""
    args = dict(epochs=4, batch=16, steps=None)  # 80 steps per epoch
    extra = ('--checkpoint-steps', 5, '-drop', 0.25)
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'reference', *extra, **args))
    assert code == 0, err

    broken = tmp_path / 'broken'
    # 1) killed inside a checkpoint write: the temporary file is complete, the rename not done
    died = run_script(tiny_args(data_dir, broken, *extra, **args), faults=('--die-in-save', 4))
    assert died.returncode == -signal.SIGKILL
    assert _partial_files(broken) and not any(n.startswith('.') and n.endswith('.pt') for n in os.listdir(broken))
    _assert_only_complete_checkpoints(broken)
    state = read_checkpoint(str(broken / 'latest.pt'))
    progress = [(state['epoch'], state['step'])]
    assert progress[0] == (0, 15)  # the 4th write (step 20) never landed
    # 2) killed at random moments while training from the last checkpoint
    rng = random.Random(1234)
    for _ in range(3):
        status = _kill_at_random_moment(tiny_args(data_dir, broken, *extra, '--resume', broken / 'latest.pt',
                                                  **args), broken / 'latest.pt', rng)
        assert status == -signal.SIGKILL, f'run.py ended ({status}) before it was killed'
        _assert_only_complete_checkpoints(broken)
        state = read_checkpoint(str(broken / 'latest.pt'))
        progress.append((state['epoch'], state['step']))
    # every run got further, and was killed before the end
    assert all(a < b for a, b in zip(progress, progress[1:])) and progress[-1] < (4, 0), progress
    final = run_script(tiny_args(data_dir, broken, *extra, '--resume', broken / 'latest.pt', **args))
    assert final.returncode == 0, final.stderr
    assert not _partial_files(broken)  # cleaned up on start
    assert_same_weights(model_tensors(tmp_path / 'reference' / 'latest.pt'), model_tensors(broken / 'latest.pt'))
