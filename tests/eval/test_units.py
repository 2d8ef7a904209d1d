"""Output units: P-STMO / APTPose MPI-INF-3DHP checkpoints predict millimetres, and give the same
protocol numbers (table, JSON, inference_data.mat) as the same network scaled to metres."""
import json
import os

import numpy as np
import pytest
import scipy.io
import torch

from common.train.checkpoint import read_checkpoint
from common.eval.mpi_inf_3dhp_protocol import format_3dhp

ROOT_17 = 14
NET = ['-f', '27', '--layers', '2', '--channel', '32', '--d_hid', '64']  # a small P-STMO-S


def write_3dhp_files(directory, seed=0):
    """P-STMO-layout files (mm) of one symmetric body with small per-frame motion, so that a network
    that predicts the mean pose scores a PCK strictly between 0 and 100."""
    rng = np.random.default_rng(seed)
    body = rng.normal(0, 250, (17, 3))  # left/right mirror images, so that flip averaging keeps it
    body[[0, 1, 14, 15, 16], 0] = 0
    body[[5, 6, 7, 11, 12, 13]] = body[[2, 3, 4, 8, 9, 10]] * [-1, 1, 1]

    def stream(n, size):
        pose = body + rng.normal(0, 40, (n, 17, 3))
        pose[..., 2] += 4000
        pixels = np.stack([1000 * pose[..., 0] / pose[..., 2] + size[0] / 2,
                           1000 * pose[..., 1] / pose[..., 2] + size[1] / 2], -1)
        return pixels, pose

    train = {'S1 Seq1': [{'0': dict(zip(('data_2d', 'data_3d'), stream(40, (2048, 2048))))}, 25]}
    test = {}
    for name, n, size in (('TS1', 50, (2048, 2048)), ('TS5', 40, (1920, 1080))):
        pixels, pose = stream(n, size)
        valid = np.ones(n)
        valid[[0, 5]] = 0
        test[name] = {'data_2d': pixels, 'data_3d': pose, 'valid': valid}
    np.savez(os.path.join(directory, 'data_train_3dhp.npz'), data=train)
    np.savez(os.path.join(directory, 'data_test_3dhp.npz'), data=test)
    relative = np.concatenate([t['data_3d'] for t in test.values()]) / 1000.0
    relative = relative - relative[:, ROOT_17:ROOT_17 + 1]
    return relative.mean(0)  # [17, 3] metres, root 0


def mean_pose_network(mean_pose_m, scale):
    """A small official-layout P-STMO state dict (``module.`` keys, no wrapper) whose centre output
    is close to ``mean_pose_m`` times ``scale`` (1: a metre model, 1000: a millimetre model)."""
    from models import build_model
    torch.manual_seed(0)
    model = build_model('stmo', num_frame=27, layers=2, channel=32, d_hid=64, num_joints=17)
    state = model.state_dict()
    for head in ('fcn.1', 'fcn_1.1'):
        state[f'{head}.weight'] = state[f'{head}.weight'] * 1e-3 * scale
        state[f'{head}.bias'] = torch.as_tensor(mean_pose_m, dtype=torch.float32).reshape(-1) * scale
    return {f'module.{k}': v for k, v in state.items()}


def run_3dhp(argv, capsys):
    from common.cli.runner import main
    from run_3dhp import PRESET
    code = main([str(a) for a in argv], PRESET)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp('units')
    mean_pose = write_3dhp_files(directory)
    torch.save(mean_pose_network(mean_pose, 1000.0), directory / 'official_mm.pth')
    torch.save(mean_pose_network(mean_pose, 1.0), directory / 'same_in_metres.pth')
    return directory


def evaluate(files, name, capsys, *extra):
    out_dir = files / f'out_{name}_{len(extra)}'
    out = run_3dhp(['--root_path', files, '-c', out_dir, '--nolog', *NET, '--reload', 1,
                    '--previous_dir', files / name, '--results-json', out_dir / 'r.json', *extra], capsys)
    return out, json.loads((out_dir / 'r.json').read_text()), scipy.io.loadmat(out_dir / 'inference_data.mat')


def test_official_mm_checkpoint_equals_same_network_in_metres(files, capsys):
    """The release's command on an official-layout millimetre file gives the numbers of the same
    network divided by 1000 given as a metre model; read as metres it is the old, wrong result."""
    out_mm, mm, mat_mm = evaluate(files, 'official_mm.pth', capsys)
    out_m, metres, mat_m = evaluate(files, 'same_in_metres.pth', capsys, '--output-unit', 'm')
    assert 0 < mm['pck'] < 100 and 0 < mm['auc'] < 100 and 20 < mm['mpjpe'] < 200
    for key in ('mpjpe', 'pck', 'auc'):
        assert mm[key] == pytest.approx(metres[key], rel=1e-6, abs=1e-4), key
        for seq in ('TS1', 'TS5'):
            assert mm['per_sequence'][seq][key] == pytest.approx(metres['per_sequence'][seq][key], abs=1e-4)
    assert mm['config']['model_config']['output_unit'] == 'mm'
    for seq in ('TS1', 'TS5'):  # the MATLAB export in mm either way
        np.testing.assert_allclose(mat_mm[seq], mat_m[seq], rtol=1e-5, atol=1e-3)
        assert 10 < np.abs(mat_mm[seq]).max() < 2000
    assert 'TestSeq1' in out_mm and out_mm.count('MPJPE') == out_m.count('MPJPE')

    _, wrong, _ = evaluate(files, 'official_mm.pth', capsys, '--output-unit', 'm')
    assert wrong['mpjpe'] > 1e4 and wrong['pck'] == 0.0  # the millimetres read as metres


def test_training_as_the_release_records_mm_and_reloads(files, capsys):
    """Stage II training of STMO on these files is in mm (as P-STMO): the checkpoint says so,
    its evaluation is in range, and fine-tuning from an official mm file stays in mm."""
    ck = files / 'trained'
    out = run_3dhp(['--root_path', files, '-c', ck, '--nolog', *NET, '-e', 1, '-b', 16, '--lr', '1e-4'], capsys)
    state = read_checkpoint(str(ck / 'best.pt'))
    assert state['model_config']['output_unit'] == 'mm'
    loss = float(out.split('train loss', 1)[1].split()[0])
    assert loss > 10  # a millimetre loss (a metre one would be below 1)
    out = run_3dhp(['--root_path', files, '-c', ck, '--nolog', '--evaluate', 'best.pt'], capsys)
    assert 'All (frame-weighted' in out
    tuned = files / 'tuned'
    run_3dhp(['--root_path', files, '-c', tuned, '--nolog', *NET, '-e', 1, '-b', 16, '--lr', '1e-5',
              '--reload', 1, '--train', 1, '--previous_dir', files / 'official_mm.pth'], capsys)
    assert read_checkpoint(str(tuned / 'best.pt'))['model_config']['output_unit'] == 'mm'


def test_retnet_on_3dhp_and_h36m_files_stay_metres():
    from common.data.datasets import H36M_SPEC
    from common.data.mpi_inf_3dhp import SPEC_17
    assert SPEC_17.release_units.get('retnet', 'm') == 'm' and SPEC_17.release_units['aptpose'] == 'mm'
    assert not H36M_SPEC.release_units


def test_3dhp_table_columns_never_run_together():
    big = {'frames': 1234, 'mpjpe': 201418013.2, 'pck': 0.0, 'auc': 0.0,
           'pck_groups': {g: 0.0 for g in 'abcdefgh'}, 'auc_groups': {g: 0.0 for g in 'abcdefgh'}}
    results = {'per_sequence': {'TS1': big}, 'per_activity': {}, 'all': big, 'mpjpe': big['mpjpe'],
               'pck': 0.0, 'auc': 0.0, 'sequence_mean': {'mpjpe': big['mpjpe'], 'pck': 0.0, 'auc': 0.0},
               'joint_names': ['j'] * 17}
    lines = format_3dhp(results).splitlines()
    row = next(line for line in lines if line.startswith('TestSeq1'))
    assert row.split() == ['TestSeq1', '1234', '201418013.2', '0.0', '0.0']
    header = lines[0]
    assert len(header) == len(row) and header.index('MPJPE') + len('MPJPE') == row.index('201418013.2') + 11
