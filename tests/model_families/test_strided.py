"""Strided Transformer and refine module: released fixtures, key tables, parameter counts."""
import json
import os

import pytest
import torch

from common.train.checkpoint import load_checkpoint, strip_module_prefix
from common.compat import model_spec_from_checkpoint
from common.errors import UserError
from common.eval.inference import predict_sequence
from common.data.pose_codec import mirror_pose
from conftest import load_fixture
from models import build_model
from models.refine import refine_inputs, uvd_to_xyz




def assert_fixture_close(mine, ref, config):
    tol = config['tolerance']
    torch.testing.assert_close(mine, ref, atol=tol['atol'], rtol=tol['rtol'])


def key_table_matches(model, table):
    """Every stored key with its shape and dtype, nothing more, nothing less."""
    expected = {t['key'].removeprefix('module.'): (tuple(t['shape']), t['dtype']) for t in table['tensors']}
    mine = {k: (tuple(v.shape), str(v.dtype).removeprefix('torch.')) for k, v in model.state_dict().items()}
    assert mine == expected
    assert sum(p.numel() for p in model.parameters()) == table['num_parameters']


@pytest.fixture(scope='module')
def strided_fx():
    return load_fixture('strided_h36m_f27_l2.pt')


@pytest.fixture(scope='module')
def strided_model(strided_fx):
    model = build_model('strided', **strided_fx['config']['constructor'])
    return load_checkpoint(model, strided_fx['checkpoint'])


def test_strided_outputs(strided_fx, strided_model):
    with torch.no_grad():
        centre, full = strided_model.forward_both(strided_fx['input'])
        assert_fixture_close(centre, strided_fx['output'], strided_fx['config'])
        assert_fixture_close(full, strided_fx['output_VTE'], strided_fx['config'])
        assert_fixture_close(strided_model(strided_fx['input']), strided_fx['output'], strided_fx['config'])


def test_strided_flip_tta(strided_fx, strided_model):
    pairs = strided_fx['config']['flip_pairs']
    left, right = pairs['joints_left'], pairs['joints_right']
    torch.testing.assert_close(mirror_pose(strided_fx['input'], left, right), strided_fx['input_flip'])
    with torch.no_grad():
        plain = strided_model.forward_both(strided_fx['input'])
        flipped = strided_model.forward_both(strided_fx['input_flip'])
    for p, f, ref in zip(plain, flipped, strided_fx['output_tta']):
        assert_fixture_close((p + mirror_pose(f, left, right)) / 2, ref, strided_fx['config'])


def test_strided_loads_from_file_and_detects(strided_fx, tmp_path):
    path = tmp_path / 'no_refine_1_4000.pth'
    torch.save(strided_fx['checkpoint'], path)
    name, config = model_spec_from_checkpoint(strided_fx['checkpoint'])
    assert name == 'strided' and config['num_frame'] == 27 and config['layers'] == 2
    model = load_checkpoint(build_model(name, **config), str(path))
    with torch.no_grad():
        assert_fixture_close(model(strided_fx['input']), strided_fx['output'], strided_fx['config'])


def test_strided_sequence_prediction_runs(strided_model):
    sequence = torch.randn(1, 12, 17, 2) * 0.3
    out = predict_sequence(strided_model, sequence, flip_pairs=([4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]))
    assert out.shape == (1, 12, 17, 3) and torch.isfinite(out).all()


def test_strided_training_loss_is_released_objective(strided_fx, strided_model):
    zeroed = torch.randn(2, 27, 17, 3)
    zeroed[:, :, 0] = 0  # targets arrive root-relative (common.data.pose_codec)
    with torch.no_grad():
        loss = strided_model.training_loss(strided_fx['input'], zeroed)
    expected = ((strided_fx['output_VTE'] - zeroed).norm(dim=-1).mean()
                + (strided_fx['output'] - zeroed[:, 13:14]).norm(dim=-1).mean())
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)


def test_strided_rejects_243_frames():
    with pytest.raises(ValueError, match='243'):
        build_model('strided', num_frame=243)
    with pytest.raises(TypeError):
        build_model('strided', num_frame=27, unknown_flag=1)


@pytest.mark.parametrize('table', ['strided_h36m_f27.json', 'strided_h36m_f351.json',
                                   'strided_refine_h36m.json', 'pstmo_refine_h36m.json',
                                   'aptpose_refine_h36m.json'])
def test_key_tables(reference_dir, table):
    with open(os.path.join(reference_dir, 'checkpoint_keys', table)) as handle:
        spec = json.load(handle)
    name = 'refine' if 'refine' in table else 'strided'
    with torch.device('meta'):
        model = build_model(name, **spec['constructor'])
    key_table_matches(model, spec)


@pytest.mark.parametrize('fixture', ['pstmo_refine_h36m.pt', 'strided_refine_h36m.pt'])
def test_refine_and_uvd_to_xyz(fixture, tmp_path):
    fx = load_fixture(fixture)
    model = build_model('refine', **fx['config']['constructor'])
    path = tmp_path / 'refine.pth'
    torch.save(fx['checkpoint'], path)
    for source in (fx['checkpoint'], str(path)):
        load_checkpoint(model, source)
        with torch.no_grad():
            assert_fixture_close(model(*fx['input']), fx['output'], fx['config'])
    assert model_spec_from_checkpoint(fx['checkpoint'])[0] == 'refine'

    chain = fx['uvd2xyz']
    pad = (chain['input_2d_bfjc'].shape[1] - 1) // 2
    root_depth = chain['gt_3d_centre'][:, :, 0, 2]
    assert_fixture_close(uvd_to_xyz(chain['uvd'], root_depth, chain['cam']), chain['xyz'], fx['config'])
    centre_2d = chain['input_2d_bfjc'][:, pad:pad + 1]
    rebuilt = refine_inputs(centre_2d, chain['pred_3d'], root_depth, chain['cam'])
    assert_fixture_close(rebuilt, chain['xyz'], fx['config'])
    assert_fixture_close(rebuilt, fx['input'][1], fx['config'])


def test_refine_rejects_a_lifter_file():
    fx = load_fixture('strided_refine_h36m.pt')
    with pytest.raises(UserError):
        load_checkpoint(build_model('strided', num_frame=27), strip_module_prefix(fx['checkpoint']))
