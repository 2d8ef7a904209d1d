"""Context-Aware PoseFormer head against the official fixture: output, intermediates, loss,
checkpoint loading and the published HRNet-32 key table."""
import json
import os

import pytest
import torch

from common.train.checkpoint import load_checkpoint
from common.compat import model_spec_from_checkpoint
from models import build_model
from models.context_pose import ref_from_crop_pixels

CONSTRUCTOR_KEYS = ('backbone', 'base_dim', 'embed_dim_ratio', 'levels', 'num_heads', 'mlp_ratio',
                    'qkv_bias', 'deform_heads', 'deform_samples', 'feature_channels')


@pytest.fixture(scope='module')
def fixture(reference_dir):
    return torch.load(os.path.join(reference_dir, 'models', 'context_pose_small.pt'), weights_only=True)


@pytest.fixture(scope='module')
def model(fixture):
    config = {k: fixture['config'][k] for k in CONSTRUCTOR_KEYS}
    net = build_model('context_pose', **config)
    # the official file layout: {'model': {'module.volume_net.*'}}
    return load_checkpoint(net, {'epoch': 1, 'lr': 1e-4, 'model': fixture['model']})


def run(model, fixture):
    inputs = fixture['inputs']
    with torch.no_grad():
        return model(inputs['keypoints_2d'], inputs['ref'], inputs['features'], return_intermediates=True)


def test_output(model, fixture):
    out, _ = run(model, fixture)
    assert model.predicts == 'centre' and model.receptive_field == 1
    torch.testing.assert_close(out, fixture['outputs']['keypoints_3d'], atol=1e-5, rtol=1e-5)


def test_intermediates(model, fixture):
    _, inter = run(model, fixture)
    expected = fixture['outputs']['intermediates']
    assert sorted(inter) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(inter[key], value, atol=2e-5, rtol=1e-5, msg=key)


def test_ref_from_crop_pixels(fixture):
    inputs = fixture['inputs']
    torch.testing.assert_close(ref_from_crop_pixels(inputs['keypoints_2d_crop_pixels']), inputs['ref'])


def test_loss(model, fixture):
    inputs = fixture['inputs']
    with torch.no_grad():
        loss = model.training_loss(inputs['keypoints_2d'], inputs['ref'], inputs['features'],
                                   fixture['loss']['gt_keypoints_3d'])
    torch.testing.assert_close(loss, fixture['loss']['mpjpe'], atol=1e-5, rtol=1e-5)


def test_official_checkpoint_detection(fixture):
    name, config = model_spec_from_checkpoint({'model': fixture['model']})
    assert name == 'context_pose'
    assert config['feature_channels'] == fixture['config']['feature_channels']
    assert config['embed_dim_ratio'] == 16 and config['levels'] == 4


def test_published_hrnet32_key_table(reference_dir):
    with open(os.path.join(reference_dir, 'checkpoint_keys', 'context_pose_hrnet32.json')) as f:
        table = json.load(f)
    net = build_model('context_pose', backbone='hrnet_32', base_dim=32, embed_dim_ratio=128)
    assert sum(p.numel() for p in net.parameters()) == table['volume_net_num_params'] == 14_094_147
    file_keys = [(e['key'], tuple(e['shape'])) for e in table['keys']]
    head = [(k[len('module.volume_net.'):], s) for k, s in file_keys if k.startswith('module.volume_net.')]
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert head == ours   # same keys, shapes and order
    # a whole official state dict (backbone included) converts onto the head alone
    state = {k[len('module.'):]: torch.zeros(s) for k, s in file_keys}
    converted = net.convert_official_state_dict(state)
    assert list(converted) == [k for k, _ in ours]


def test_keypoint_datasets_refuse_the_image_feature_model(tmp_path):
    from helpers_data import run_inprocess, tiny_args, write_tiny_h36m
    data = write_tiny_h36m(tmp_path / 'data')
    code, _, err = run_inprocess([*tiny_args(data, tmp_path / 'ck', epochs=1), '--model', 'context_pose'])
    assert code == 2 and err.count('\n') == 1 and 'feature maps' in err
