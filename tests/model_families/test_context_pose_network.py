"""The complete Context-Aware PoseFormer network (HRNet backbone + head) against the official
fixtures and key tables: backbone features, full-model output, flip test, checkpoint layouts."""
import json
import os

import pytest
import torch

from common.errors import UserError
from common.eval.metrics import mpjpe
from common.train.backbone_weights import build_backbone, load_backbone_weights
from common.train.checkpoint import load_checkpoint
from models import build_model
from models.context_pose import ContextPoseNetwork, mirror_batch, mirror_pose_3d, normalise_images


def key_table(reference_dir, name):
    with open(os.path.join(reference_dir, 'checkpoint_keys', name)) as handle:
        return json.load(handle)


def state_of(table, prefix=''):
    """A state dict with the keys, shapes and dtypes a key table lists (values arbitrary)."""
    return {prefix + e['key']: torch.zeros(e['shape'], dtype=getattr(torch, e['dtype'].replace('torch.', '')))
            for e in table['keys']}


def test_hrnet_w32_fixture_features(reference_dir, tmp_path):
    fx = torch.load(os.path.join(reference_dir, 'models', 'hrnet_w32_small.pt'), weights_only=True)
    path = tmp_path / 'pose_hrnet_w32_256x192.pth'
    torch.save(fx['checkpoint'], path)   # the COCO file's layout, final_layer.* included
    backbone = load_backbone_weights(build_backbone('hrnet_32'), str(path), 'hrnet_32')
    images = normalise_images(fx['image_uint8'])
    torch.testing.assert_close(images.permute(0, 3, 1, 2), fx['input'], **fx['config']['tolerance_input'])
    with torch.no_grad():
        features = backbone(fx['input'])
    assert [tuple(f.shape) for f in features] == [(2, 32, 32, 24), (2, 64, 16, 12), (2, 128, 8, 6), (2, 256, 4, 3)]
    for ours, reference in zip(features, fx['features']):
        torch.testing.assert_close(ours, reference, **fx['config']['tolerance'])


@pytest.mark.parametrize('width', [32, 48])
def test_coco_key_tables_load(reference_dir, width):
    table = key_table(reference_dir, f'pose_hrnet_w{width}_256x192.json')
    backbone = build_backbone(f'hrnet_{width}')
    ours = [(k, tuple(v.shape)) for k, v in backbone.state_dict().items()]
    listed = [(e['key'], tuple(e['shape'])) for e in table['keys'] if e['key'] not in table['unused_keys']]
    assert ours == listed and len(ours) == table['num_keys_used_by_context_pose'] == 1752
    assert sum(p.numel() for p in backbone.parameters()) == table['num_params_used_by_context_pose']
    state = state_of(table)
    state['stage4.2.fuse_layers.0.1.0.weight'].fill_(0.5)
    # final_layer.* dropped, every other key required
    loaded = load_backbone_weights(backbone, f'pose_hrnet_w{width}_256x192.pth', f'hrnet_{width}', source=state)
    assert loaded.stage4[2].fuse_layers[0][1][0].weight.mean().item() == pytest.approx(0.5)


def test_backbone_file_of_another_width_is_one_line(reference_dir, tmp_path):
    path = tmp_path / 'pose_hrnet_w48_256x192.pth'
    state = state_of(key_table(reference_dir, 'pose_hrnet_w48_256x192.json'))
    torch.save({k: v for k, v in state.items() if k.startswith(('conv1', 'bn1', 'transition1'))}, path)
    with pytest.raises(UserError, match=r"pose_hrnet_w48_256x192.pth.*--backbone hrnet_48") as err:
        load_backbone_weights(build_backbone('hrnet_32'), str(path), 'hrnet_32')
    assert '\n' not in str(err.value)


def full_network(head_channels, embed_dim_ratio):
    head = build_model('context_pose', feature_channels=head_channels, embed_dim_ratio=embed_dim_ratio)
    return ContextPoseNetwork(build_backbone('hrnet_32'), head, 'hrnet_32')


@pytest.fixture(scope='module')
def full_fixture(reference_dir):
    return torch.load(os.path.join(reference_dir, 'models', 'context_pose_full_small.pt'), weights_only=True)


def test_full_network_fixture(full_fixture):
    fx = full_fixture
    net = load_checkpoint(full_network(fx['config']['head_constructor']['feature_channels'], 16), fx['checkpoint'])
    images = normalise_images(fx['image_uint8'])
    torch.testing.assert_close(images, fx['images'], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        features = net.features(images)
        for ours, reference in zip(features, fx['features']):
            torch.testing.assert_close(ours, reference, **fx['config']['tolerance_features'])
        out = net(images, fx['keypoints_2d'], fx['keypoints_2d_crop'].clone())
        torch.testing.assert_close(out, fx['output'], **fx['config']['tolerance'])
        flipped = mirror_batch(images, fx['keypoints_2d'], fx['keypoints_2d_crop'])
        for ours, key in zip(flipped, ('images', 'keypoints_2d', 'keypoints_2d_crop')):
            torch.testing.assert_close(ours, fx['flip'][key], atol=1e-6, rtol=1e-6)
        raw = net(*flipped)
        torch.testing.assert_close(raw, fx['flip']['output_raw'], **fx['config']['tolerance'])
        flip_test = (out + mirror_pose_3d(raw)) / 2
    torch.testing.assert_close(flip_test, fx['output_flip_test'], **fx['config']['tolerance'])
    assert mpjpe(flip_test, fx['keypoints_3d_gt']).item() == pytest.approx(fx['mpjpe_flip_test'], abs=3e-4)


def test_published_full_key_table_loads(reference_dir):
    table = key_table(reference_dir, 'context_pose_hrnet32.json')
    assert table['num_keys'] == 1943
    net = full_network([32, 64, 128, 256], 128)
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == [(e['key'][len('module.'):], tuple(e['shape'])) for e in table['keys']]
    published = {'epoch': 3, 'lr': 0.00064, 'model': state_of(table), 'optimizer': {}}   # best_epoch.bin
    load_checkpoint(net, published)   # strict: no missing, no unexpected key


def test_cpn_loads_the_published_file_layout(tmp_path):
    """CPN50_256x192.pth.tar: {'epoch', 'state_dict', 'optimizer'}, module. keys, 582 entries
    (97 convolutions, 97 BatchNorms), every one required, global_net.predict.* and
    refine_net.final_predict.* included; four 256-channel maps of 64 x 48 for the 256 x 192 crop."""
    backbone = build_backbone('cpn')
    state = backbone.state_dict()
    assert len(state) == 582
    assert sum(k.endswith('running_var') for k in state) == 97 == sum(v.dim() == 4 for v in state.values())
    assert any(k.startswith('global_net.predict.3.') for k in state)
    assert state['refine_net.final_predict.0.conv3.weight'].shape == (256, 128, 1, 1)
    published = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / 'CPN50_256x192.pth.tar'
    torch.save({'epoch': 40, 'state_dict': {'module.' + k: v for k, v in published.items()}, 'optimizer': {}}, path)
    load_backbone_weights(backbone, str(path), 'cpn')
    assert backbone.refine_net.cascade[0][0].downsample[0].weight.mean().item() == pytest.approx(0.25)
    partial = {'module.' + k: v for k, v in published.items() if not k.startswith('refine_net.final_predict')}
    torch.save({'epoch': 40, 'state_dict': partial, 'optimizer': {}}, path)
    with pytest.raises(UserError, match='CPN50_256x192.pth.tar.*missing refine_net.final_predict'):
        load_backbone_weights(build_backbone('cpn'), str(path), 'cpn')
    with torch.no_grad():
        maps = build_backbone('cpn')(torch.zeros(1, 3, 256, 192))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 64, 48)] * 4


def test_cpn_normalisation_has_no_std():
    white = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    expected = torch.tensor([1 - 122.7717 / 255, 1 - 115.9465 / 255, 1 - 102.9801 / 255])
    torch.testing.assert_close(normalise_images(white, 'cpn')[0, 0, 0], expected)
    imagenet = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(normalise_images(white)[0, 0, 0], imagenet)
