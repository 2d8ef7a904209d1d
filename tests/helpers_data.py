"""Shared helpers of the engine tests: a tiny Human3.6M-format dataset, the command line
of a tiny training run, in-process and subprocess runners, and a launcher that injects
faults (a process killed inside a checkpoint write, a rank that exits or hangs).

The dataset uses the VideoPose3D file layout (data_3d_h36m.npz with 32 raw joints in
world metres, data_2d_h36m_gt.npz with 4 camera streams in pixels) and is projected
through common.data.camera, so 2D and 3D are consistent and the Human3.6M reader takes it
unchanged.

Launcher (used as ``python tests/helpers_data.py [fault options] -- <run.py flags>``):
    --die-in-save K     SIGKILL this process inside the K-th checkpoint write, after the
                        temporary file is written and before it is renamed
    --exit-rank R       rank R leaves with status 0 at its --exit-step-th training step
    --hang-rank R       rank R sleeps forever at its --exit-step-th training step
"""
import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KEYPOINTS_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
ACTIONS = ('Walking', 'Eating 2')


def _motion(frames, seed):
    """[frames, 32, 3] world metres: a fixed random body whose joints oscillate smoothly
    while the whole body walks slowly around the capture volume's centre."""
    rng = np.random.default_rng(seed)
    body = rng.uniform([-0.25, -0.25, 0.1], [0.25, 0.25, 1.7], size=(32, 3))
    amplitude = rng.uniform(0.02, 0.12, size=(32, 3))
    frequency = rng.uniform(0.5, 2.0, size=(32, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(32, 3))
    t = np.arange(frames)[:, None, None] / 50.0
    wobble = amplitude * np.sin(2 * np.pi * frequency * t + phase)
    angle = 0.3 * t[..., 0]
    centre = np.stack([0.8 * np.cos(angle), 0.8 * np.sin(angle), np.zeros_like(angle)], -1)
    return (body + wobble + centre).astype(np.float32)


def write_tiny_h36m(directory, frames=120, subjects=('S1', 'S9'), actions=ACTIONS, short_action=None,
                    num_joints_2d=17, corrupt=None):
    """Write data_3d_h36m.npz and data_2d_h36m_gt.npz into ``directory``; returns it.

    frames -- frames per action; short_action -- (name, frames) of an extra short action;
    num_joints_2d -- joints of the 2D file (17 is right; anything else is a broken file);
    corrupt -- None, 'nan' (a NaN keypoint in the first 2D stream)."""
    from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
    from common.data.skeleton import h36m_raw_to_17
    os.makedirs(directory, exist_ok=True)
    cameras = load_h36m_cameras()
    plan = [(a, frames) for a in actions] + ([short_action] if short_action else [])
    positions_3d, positions_2d = {}, {}
    for s_index, subject in enumerate(subjects):
        positions_3d[subject], positions_2d[subject] = {}, {}
        for a_index, (action, length) in enumerate(plan):
            world = _motion(length, seed=100 * s_index + a_index)
            positions_3d[subject][action] = world
            streams = []
            for camera in cameras[subject]:
                local = world_to_camera(h36m_raw_to_17(world), camera.orientation, camera.translation)
                pixels = project_to_2d(local, camera).astype(np.float32)
                if num_joints_2d != 17:
                    pixels = np.resize(pixels.transpose(1, 0, 2), (num_joints_2d, length, 2)).transpose(1, 0, 2)
                streams.append(np.ascontiguousarray(pixels))
            positions_2d[subject][action] = streams
    if corrupt == 'nan':
        first = positions_2d[subjects[0]][plan[0][0]][0]
        first[3, 5, 0] = np.nan
    np.savez_compressed(os.path.join(directory, 'data_3d_h36m.npz'), positions_3d=positions_3d)
    np.savez_compressed(os.path.join(directory, 'data_2d_h36m_gt.npz'), positions_2d=positions_2d,
                        metadata={'keypoints_symmetry': KEYPOINTS_SYMMETRY, 'num_joints': 17})
    return str(directory)


def tiny_args(data_dir, checkpoint_dir, *extra, epochs=2, batch=64, steps=None):
    """run.py flags of a tiny VideoPose3D run (receptive field 9, 32 channels) on the tiny data."""
    args = ['-d', 'h36m', '-k', 'gt', '--root_path', str(data_dir), '-str', 'S1', '-ste', 'S9',
            '-arc', '3,3', '-ch', '32', '-e', str(epochs), '-b', str(batch), '-lr', '1e-3',
            '-c', str(checkpoint_dir), '--nolog']
    if steps:
        args += ['--max-steps-per-epoch', str(steps)]
    return args + [str(a) for a in extra]


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """In-process runs use one thread, as the subprocesses (OMP_NUM_THREADS=1): results then
    match bit for bit, and two busy threads on two shared cores are slower than one."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def captured(call):
    """(exit status, stdout, stderr) of ``call()``, which returns the status or exits (argparse)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = call()
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def load_script(name):
    """A top-level script of the project (render.py, run_in_the_wild.py, ...) as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name[:-3] + '_script', os.path.join(ROOT, name))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def run_inprocess(argv):
    """(exit status, stdout, stderr) of common.cli.runner.main(argv) for run.py."""
    from common.cli.runner import ScriptPreset, main
    preset = ScriptPreset(script='run.py', dataset='h36m', description='')
    return captured(lambda: main([str(a) for a in argv], preset))


def subprocess_env(threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=ROOT, PYTHONUNBUFFERED='1')
    env.pop('WORLD_SIZE', None)
    return env


def run_script(argv, faults=(), timeout=600, threads=1):
    """subprocess.CompletedProcess of run.py (through the fault launcher when ``faults``)."""
    command = [sys.executable, os.path.join(ROOT, 'run.py')] if not faults else \
        [sys.executable, os.path.abspath(__file__), *map(str, faults), '--']
    return subprocess.run(command + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(threads), cwd=ROOT)


def torchrun_command(argv, nproc=2, faults=()):
    launcher = [os.path.abspath(__file__), *map(str, faults), '--'] if faults else [os.path.join(ROOT, 'run.py')]
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
            *launcher, *[str(a) for a in argv]]


def file_digests(directory):
    """{name: sha1} of every file in ``directory`` (to show that nothing was overwritten)."""
    if not os.path.isdir(directory):
        return {}
    return {name: hashlib.sha1(open(os.path.join(directory, name), 'rb').read()).hexdigest()
            for name in sorted(os.listdir(directory))}


def model_tensors(path):
    """The model state dict of one of our checkpoint files (loaded safely)."""
    from common.train.checkpoint import read_checkpoint
    return read_checkpoint(str(path))['model']


def assert_same_weights(a, b):
    import torch
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f'{key} differs'


# ----------------------------------------------------------------------------- fault launcher

def _install_faults(options):
    import torch
    import common.train.checkpoint as checkpoint
    if options.die_in_save:
        original, calls = checkpoint.os.replace, [0]

        class _OsWithDeath:  # common.train.checkpoint's view of `os`: dies just before the rename
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                calls[0] += 1
                if calls[0] == options.die_in_save:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(src, dst)
        checkpoint.os = _OsWithDeath()
    rank = int(os.environ.get('RANK', '0'))
    if rank in (options.exit_rank, options.hang_rank):
        import common.train.engine as engine
        forward, steps = engine.TrainingObjective.forward, [0]

        def faulty_forward(self, *args):
            steps[0] += 1
            if steps[0] == options.exit_step:
                if rank == options.exit_rank:
                    os._exit(0)
                while True:
                    time.sleep(1)
            return forward(self, *args)
        engine.TrainingObjective.forward = faulty_forward
    return torch


def _launch(argv):
    import argparse
    split = argv.index('--')
    parser = argparse.ArgumentParser()
    parser.add_argument('--die-in-save', type=int, default=0)
    parser.add_argument('--exit-rank', type=int, default=-1)
    parser.add_argument('--hang-rank', type=int, default=-1)
    parser.add_argument('--exit-step', type=int, default=3)
    options = parser.parse_args(argv[:split])
    _install_faults(options)
    from common.cli.runner import ScriptPreset, main
    return main(argv[split + 1:], ScriptPreset(script='run.py', dataset='h36m', description=''))


if __name__ == '__main__':
    sys.exit(_launch(sys.argv[1:]))
