"""P-STMO and APTPose: released fixtures, masks, key tables, two-stage training."""
import json
import os

import pytest
import torch

from common.train.checkpoint import load_checkpoint, transfer_matching_weights
from common.compat import model_spec_from_checkpoint
from common.errors import UserError
from common.eval.inference import predict_sequence
from common.data.pose_codec import mirror_pose
from conftest import load_fixture
from models import build_model
from models.stmo import BONES_17, bone_vectors, draw_temporal_mask

JOINT_MASKS = ('spatial_mask', 'bone_mask', 'limb_mask1', 'limb_mask2')




def bfjc(official):
    """(B, C, F, J, 1) released layout -> (B, F, J, C)."""
    return official[..., 0].permute(0, 2, 3, 1)


def assert_fixture_close(mine, ref, config):
    tol = config['tolerance']
    torch.testing.assert_close(mine, ref, atol=tol['atol'], rtol=tol['rtol'])


def loaded(name, fx, tmp_path=None, **extra):
    """The fixture's model loaded through load_checkpoint from the object, or from a file."""
    model = build_model(name, **fx['config']['constructor'], **extra)
    source = fx['checkpoint']
    if tmp_path is not None:
        source = str(tmp_path / 'weights.pth')
        torch.save(fx['checkpoint'], source)
    return load_checkpoint(model, source)


@pytest.fixture(scope='module')
def pstmo_fx():
    return load_fixture('pstmo_h36m_f81_l2.pt')


@pytest.fixture(scope='module')
def aptpose_fx():
    return load_fixture('aptpose_stage2_h36m_f27_l2.pt')


@pytest.mark.parametrize('from_file', [False, True])
def test_pstmo_outputs_and_flip(pstmo_fx, tmp_path, from_file):
    fx, config = pstmo_fx, pstmo_fx['config']
    model = loaded('stmo', fx, tmp_path if from_file else None)
    assert bfjc(fx['input']).equal(fx['input_bfjc'])
    with torch.no_grad():
        plain = model.forward_both(fx['input_bfjc'])
        flipped = model.forward_both(bfjc(fx['input_flip']))
    assert_fixture_close(plain[0], fx['output_bfjc'], config)
    assert_fixture_close(plain[1], fx['output_VTE_bfjc'], config)
    left, right = config['flip_pairs']['joints_left'], config['flip_pairs']['joints_right']
    for p, f, ref in zip(plain, flipped, fx['output_tta']):
        assert_fixture_close((p + mirror_pose(f, left, right)) / 2, bfjc(ref), config)


def test_pstmo_detection_and_sequence_prediction(pstmo_fx):
    name, config = model_spec_from_checkpoint(pstmo_fx['checkpoint'])
    assert (name, config['num_frame'], config['layers'], config['channel'], config['d_hid']) == \
        ('stmo', 81, 2, 32, 64)
    model = load_checkpoint(build_model(name, **config), pstmo_fx['checkpoint'])
    assert model.Transformer_reduce.model.layers[3].stride == 3
    with torch.no_grad():
        assert_fixture_close(model(pstmo_fx['input_bfjc']), pstmo_fx['output_bfjc'], pstmo_fx['config'])
    model.frame_step = 2
    out = predict_sequence(model, pstmo_fx['input_bfjc'][:1, :20])
    assert out.shape == (1, 20, 17, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize('name', ['stmo', 'aptpose', 'strided'])
def test_sequence_prediction_shares_frame_features_exactly(name):
    """Every frame is embedded once and its windows gather the features: the result equals
    running each (edge-padded, tds-spaced) window through forward, in small batches too."""
    torch.manual_seed(0)
    model = build_model(name, num_frame=27, layers=2, channel=32, d_hid=64, frame_step=2).eval()
    x = torch.randn(2, 40, 17, 2) * 0.3
    with torch.no_grad():
        out = predict_sequence(model, x, max_batch=7)
        index = (torch.arange(40)[:, None] + torch.arange(-13, 14) * 2).clamp(0, 39)
        reference = torch.stack([model(x[b, index])[:, 0] for b in range(2)])
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


def test_pstmo_training_loss_is_released_objective(pstmo_fx):
    model = loaded('stmo', pstmo_fx)
    zeroed = torch.randn(2, 81, 17, 3)
    zeroed[:, :, 0] = 0  # targets arrive root-relative (common.data.pose_codec)
    with torch.no_grad():
        loss = model.training_loss(pstmo_fx['input_bfjc'], zeroed)
    expected = ((pstmo_fx['output_VTE_bfjc'] - zeroed).norm(dim=-1).mean()
                + (pstmo_fx['output_bfjc'] - zeroed[:, 40:41]).norm(dim=-1).mean())
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('name,fixture', [('stmo', 'pstmo_mae_h36m_f81_l2.pt'),
                                          ('aptpose', 'aptpose_stage1_h36m_f27_l2.pt')])
def test_masked_pretraining_fixtures(name, fixture, tmp_path):
    fx = load_fixture(fixture)
    masks = {k: fx[k] for k in JOINT_MASKS if k in fx}
    detected, config = model_spec_from_checkpoint(fx['checkpoint'])
    assert detected == name and config['pretrain'] is True
    model = loaded(name, fx, tmp_path, pretrain=True)
    assert model.is_pretraining
    with torch.no_grad():
        out = model.reconstruct(fx['input_bfjc'], fx['mask'], **masks)
    assert_fixture_close(out, fx['output_bfjc'], fx['config'])
    assert fx['input_bfjc'][:, model.frame_order(fx['mask'])].equal(fx['target_order_bfjc'])


@pytest.mark.parametrize('from_file', [False, True])
def test_aptpose_outputs_and_flip_quirk(aptpose_fx, tmp_path, from_file):
    fx, config = aptpose_fx, aptpose_fx['config']
    model = loaded('aptpose', fx, tmp_path if from_file else None)
    masks = {k: fx[k] for k in JOINT_MASKS}
    with torch.no_grad():
        plain = model.forward_all(fx['input_bfjc'], masks)
        flipped = model.forward_all(bfjc(fx['input_flip']), masks)
    for mine, key in zip(plain, config['output_keys']):
        assert_fixture_close(mine, fx[key + '_bfjc'], config)
    left, right = config['flip_pairs']['joints_left'], config['flip_pairs']['joints_right']
    poses = [(p + mirror_pose(f, left, right)) / 2 for p, f in zip(plain[:2], flipped[:2])]
    bones = [(p + f) / 2 for p, f in zip(plain[2:], flipped[2:])]  # released: bones not mirrored back
    for mine, ref in zip(poses + bones, fx['output_tta']):
        assert_fixture_close(mine, bfjc(ref), config)


def test_aptpose_evaluation_is_deterministic_and_unmasked(aptpose_fx):
    model = loaded('aptpose', aptpose_fx)
    x = aptpose_fx['input_bfjc']
    with torch.no_grad():
        first, second = model(x), model(x)
        unmasked = model.forward_all(x, {k: torch.zeros(27, 17, dtype=torch.bool) for k in JOINT_MASKS})
    assert first.equal(second) and first.equal(unmasked[0])
    assert model_spec_from_checkpoint(aptpose_fx['checkpoint']) == ('aptpose', {
        'layers': 2, 'channel': 32, 'num_frame': 27, 'd_hid': 64, 'num_joints': 17,
        'out_joints': 17, 'sem_layers': 1, 'mask_tokens': True})


def test_aptpose_training_loss_adds_bone_terms(aptpose_fx):
    model = loaded('aptpose', aptpose_fx)
    x, target = aptpose_fx['input_bfjc'], torch.randn(2, 27, 17, 3)
    target[:, :, 0] = 0  # targets arrive root-relative (common.data.pose_codec)
    with torch.no_grad():
        centre, full, bone_centre, bone_full = model.forward_all(x)
        loss = model.training_loss(x, target)
    zeroed = target
    bones = target[:, :, [p for p, _ in BONES_17]] - target[:, :, [c for _, c in BONES_17]]
    expected = ((full - zeroed).norm(dim=-1).mean() + (centre - zeroed[:, 13:14]).norm(dim=-1).mean()
                + 0.5 * (bone_full - bones).norm(dim=-1).mean()
                + 0.5 * (bone_centre - bones[:, 13:14]).norm(dim=-1).mean())
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    assert bone_vectors(target)[0, 0, 10].equal(target[0, 0, 8] - target[0, 0, 11])


def test_random_masks_follow_the_released_rules():
    torch.manual_seed(0)
    assert int(draw_temporal_mask(81, 0.8).sum()) == 64
    model = build_model('aptpose', num_frame=27, layers=2, channel=16, d_hid=32, pretrain=True,
                        spatial_mask_num=3)
    masks = model.draw_masks(27)
    assert (masks['spatial_mask'].sum(1) == 3).all() and not masks['spatial_mask'][:, 16].any()
    assert (masks['bone_mask'].sum(1) == 2).all() and (masks['limb_mask1'].sum(1) == 3).all()
    assert (masks['limb_mask2'].sum(1) == 6).all()
    bones = {frozenset(b) for b in BONES_17}
    limbs = {frozenset(j) for j in ([4, 5, 6], [11, 12, 13], [1, 2, 3], [14, 15, 16])}
    for frame in range(27):
        assert frozenset(masks['bone_mask'][frame].nonzero().flatten().tolist()) in bones
        assert frozenset(masks['limb_mask1'][frame].nonzero().flatten().tolist()) in limbs
    pstmo = build_model('stmo', num_frame=27, layers=2, channel=16, d_hid=32, pretrain=True)
    assert set(pstmo.draw_masks(27)) == {'spatial_mask'}
    assert build_model('stmo', num_frame=27, layers=2, channel=16, d_hid=32).draw_masks(27) == {}



def test_aptpose_3dhp_class_sees_unmasked_input():
    torch.manual_seed(0)
    model = build_model('aptpose', num_frame=27, layers=2, channel=16, d_hid=32, dataset='mpii3d_univ')
    assert not any(name.endswith('_mask_token') for name, _ in model.named_parameters())
    assert model.draw_masks(27) == {} and model.sides[0] == [5, 6, 7, 11, 12, 13]
    x = torch.randn(2, 27, 17, 2)
    model.train().training_loss(x, torch.randn(2, 27, 17, 3)).backward()
    with torch.no_grad():
        assert [o.shape[1:] for o in model.eval().forward_all(x)] == [
            (1, 17, 3), (27, 17, 3), (1, 16, 3), (27, 16, 3)]

@pytest.mark.parametrize('name', ['stmo', 'aptpose'])
def test_two_stage_training(name):
    torch.manual_seed(0)
    config = dict(num_frame=9, layers=2, channel=16, d_hid=32)
    stage1 = build_model(name, pretrain=True, temporal_mask_rate=0.6, spatial_mask_num=2, **config).train()
    poses = torch.randn(8, 9, 17, 2) * 0.3
    optimizer = torch.optim.Adam(stage1.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = stage1.training_loss(poses, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5])
    assert stage1(poses).shape == (8, 9, 17, 2)

    stage2 = build_model(name, **config)
    copied = transfer_matching_weights(stage2, stage1.state_dict())
    source, target = stage1.state_dict(), stage2.state_dict()
    assert copied and all(target[k].equal(source[k]) for k in copied)
    assert all(k.startswith(('encoder', 'Transformer.', 'spatial_mask_token', 'bone_mask_token',
                             'limb_mask1_token', 'limb_mask2_token')) for k in copied)
    assert any(k.startswith('Transformer.model.layers.1') for k in copied)
    assert not any(k.startswith(('Transformer_dec', 'fcn_dec', 'dec_pos')) for k in copied)
    expected_encoder = 'encoder1.fc_1.weight' if name == 'aptpose' else 'encoder.fc_1.weight'
    assert expected_encoder in copied
    stage2.train().training_loss(poses, torch.randn(8, 9, 17, 3)).backward()


def test_official_pretrain_file_transfers_and_is_not_a_finetune_file(aptpose_fx):
    stage1 = load_fixture('aptpose_stage1_h36m_f27_l2.pt')
    model = build_model('aptpose', **aptpose_fx['config']['constructor'])
    copied = transfer_matching_weights(model, stage1['checkpoint'])
    assert 'limb_mask2_token' in copied and 'encoder4.fc_2.bias' in copied
    assert model.encoder4.fc_2.bias.equal(stage1['checkpoint']['module.encoder4.fc_2.bias'])
    with pytest.raises(UserError, match='Transformer_reduce'):
        load_checkpoint(build_model('aptpose', **aptpose_fx['config']['constructor']), stage1['checkpoint'])


KEY_TABLES = ['pstmo_h36m_f243.json', 'pstmo_mae_h36m_f243.json', 'pstmo_s_3dhp_f81.json',
              'pstmo_s_h36m_f243.json', 'pstmo_s_mae_3dhp_f81.json', 'pstmo_s_mae_h36m_f243.json',
              'aptpose_stage1_3dhp_f81_l3.json', 'aptpose_stage1_h36m_f243_l4.json',
              'aptpose_stage2_3dhp_f81_l3.json', 'aptpose_stage2_3dhp_f81_l4.json',
              'aptpose_stage2_h36m_f243_l4.json', 'aptpose_stage2_h36m_f243_l8.json']


@pytest.mark.parametrize('table', KEY_TABLES)
def test_key_tables_and_parameter_counts(reference_dir, table):
    with open(os.path.join(reference_dir, 'checkpoint_keys', table)) as handle:
        spec = json.load(handle)
    kwargs = dict(spec['constructor'], pretrain='Model_MAE' in spec['model_class'])
    name = 'aptpose' if table.startswith('aptpose') else 'stmo'
    if name == 'aptpose':
        kwargs['dataset'] = 'mpii3d_univ' if '_3dhp_' in table else 'h36m'
    with torch.device('meta'):
        model = build_model(name, **kwargs)
    expected = {t['key'].removeprefix('module.'): (tuple(t['shape']), t['dtype']) for t in spec['tensors']}
    mine = {k: (tuple(v.shape), str(v.dtype).removeprefix('torch.')) for k, v in model.state_dict().items()}
    assert mine == expected
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters']


def test_aptpose_3dhp_file_through_the_api_says_what_to_pass(tmp_path):
    """The release's 3DHP class takes the same constructor arguments but has no mask tokens:
    building with the Human3.6M default refuses the file in one line naming the fix."""
    official = dict(frames=27, layers=2, channel=32, d_hid=64, n_joints=17, out_joints=17, sem_layers=1)
    source = build_model('aptpose', **official, dataset='mpii3d_univ')
    path = tmp_path / '3dhp_official.pth'
    torch.save({f'module.{k}': v for k, v in source.state_dict().items()}, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(build_model('aptpose', **official), str(path))
    assert "dataset='mpii3d_univ'" in str(err.value) and 'mask_tokens=False' in str(err.value)
    assert '\n' not in str(err.value)
    x = torch.randn(2, 27, 17, 2)
    for model in (build_model('aptpose', **official, dataset='mpii3d_univ'),
                  build_model('aptpose', **official, mask_tokens=False)):
        load_checkpoint(model, str(path))
        torch.testing.assert_close(model(x), source.eval()(x))
