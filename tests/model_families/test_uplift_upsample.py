"""Uplift-and-Upsample against the official Keras fixture: .h5 import, outputs, intermediates,
loss, flip averaging, evaluation windowing and keyframe interpolation; the released
configurations' variable layouts."""
import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from common.data.pose_codec import mirror_pose
from common.keras_import import (load_keras_h5, load_uplift_h5, uplift_options_from_h5,
                                 uplift_state_dict_from_h5)
from models import build_model
from models.uplift_upsample import (OFFICIAL_FLIP_ORDER, OFFICIAL_FROM_H36M, evaluation_windows,
                                    interpolate_keyframes, options_from_official_config)

TOL = dict(atol=2e-5, rtol=1e-5)
LEFT, RIGHT = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
H36M_FROM_OFFICIAL = list(np.argsort(OFFICIAL_FROM_H36M))


@pytest.fixture(scope='module')
def fixture(reference_dir):
    return np.load(os.path.join(reference_dir, 'models', 'uplift_upsample_small.npz'))


@pytest.fixture(scope='module')
def model(fixture, reference_dir):
    config = json.loads(str(fixture['config_json']))
    net = build_model('uplift_upsample', **options_from_official_config(config))
    return load_uplift_h5(net, os.path.join(reference_dir, 'models', 'uplift_upsample_small.h5'))


def ref(fixture, key):
    return torch.from_numpy(np.asarray(fixture[key]))


def to_h36m(official):
    """[..., J, C] official joint order -> h36m_17 order."""
    return official[..., H36M_FROM_OFFICIAL, :]


def test_h5_matches_npz_parameters(fixture, reference_dir):
    arrays = load_keras_h5(os.path.join(reference_dir, 'models', 'uplift_upsample_small.h5'))
    names = [key.split('/', 1)[1] for key in arrays]
    assert names == [str(n) for n in fixture['param_order']]
    for key, value in arrays.items():
        np.testing.assert_array_equal(value, fixture['param/' + key.split('/', 1)[1]])


def test_official_order_outputs_and_intermediates(model, fixture):
    with torch.no_grad():
        sequence, centre, inter = model.lift(ref(fixture, 'input/masked_keypoints2d'),
                                             ref(fixture, 'input/stride_mask'),
                                             official_order=True, return_intermediates=True)
    torch.testing.assert_close(sequence, ref(fixture, 'output/full_sequence'), **TOL)
    torch.testing.assert_close(centre, ref(fixture, 'output/central'), **TOL)
    names = [k for k in fixture.files if k.startswith('intermediate/')]
    assert sorted(inter) == sorted(k.split('/', 1)[1] for k in names)
    for key in names:
        torch.testing.assert_close(inter[key.split('/', 1)[1]], ref(fixture, key), **TOL)
    # the key mask of block 1 gives non-keyframe columns exactly zero weight
    masked = ~ref(fixture, 'input/stride_mask')[:, None, None, :].expand_as(inter['temporal_block_1_attention'])
    assert inter['temporal_block_1_attention'][masked].abs().max() == 0


def test_h36m_order_forward_and_flip_tta(model, fixture):
    """Our order in and out; the unmasked 2D input is fine (non-keyframes are discarded)."""
    x = to_h36m(ref(fixture, 'input/keypoints2d'))
    mask = ref(fixture, 'input/stride_mask')
    with torch.no_grad():
        sequence, centre = model.lift(x, mask)
        flipped = model.lift(mirror_pose(x, LEFT, RIGHT), mask)[1]
        # forward(): centred keyframes, so only row 0 (centre = keyframe, s_in 3) applies
        forward = model(x[:1])
    torch.testing.assert_close(sequence, to_h36m(ref(fixture, 'output/full_sequence')), **TOL)
    torch.testing.assert_close(centre, to_h36m(ref(fixture, 'output/central')), **TOL)
    tta = (centre + mirror_pose(flipped, LEFT, RIGHT)) / 2
    torch.testing.assert_close(tta, to_h36m(ref(fixture, 'output/central_flip_tta')), **TOL)
    assert forward.shape == (1, 1, 17, 3)
    torch.testing.assert_close(forward[:, 0], to_h36m(ref(fixture, 'output/central'))[:1], **TOL)


def test_flip_tta_in_official_order(model, fixture):
    x, mask = ref(fixture, 'input/keypoints2d'), ref(fixture, 'input/stride_mask')
    order = list(OFFICIAL_FLIP_ORDER)
    flipped_x = x[:, :, order] * torch.tensor([-1.0, 1.0])
    with torch.no_grad():
        centre = model.lift(x * mask[..., None, None], mask, official_order=True)[1]
        flipped = model.lift(flipped_x * mask[..., None, None], mask, official_order=True)[1]
    tta = (centre + flipped[:, order] * torch.tensor([-1.0, 1.0, 1.0])) / 2
    torch.testing.assert_close(tta, ref(fixture, 'output/central_flip_tta'), **TOL)


def test_loss(model, fixture):
    x = to_h36m(ref(fixture, 'input/keypoints2d'))
    target = to_h36m(ref(fixture, 'loss/gt3d'))
    target = target - target[..., :1, :]  # the release's loss centres on the root; ours gets it centred
    mask = ref(fixture, 'input/stride_mask')
    with torch.no_grad():
        centre, sequence = model.loss_terms(x, target, mask)
        total = model.training_loss(x, target, mask)
    torch.testing.assert_close(centre, ref(fixture, 'loss/central'), **TOL)
    torch.testing.assert_close(sequence, ref(fixture, 'loss/sequence'), **TOL)
    torch.testing.assert_close(total, ref(fixture, 'loss/total'), **TOL)


def test_training_loss_backward_with_random_masks(model):
    model.train()
    try:
        x = torch.randn(3, model.receptive_field, 17, 2)
        loss = model.training_loss(x, torch.randn(3, model.receptive_field, 17, 3))
        loss.backward()
        assert torch.isfinite(loss) and model.strided_input_token.grad is not None
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_keyframe_interpolation(fixture):
    out = interpolate_keyframes(ref(fixture, 'interp/pred3d'), ref(fixture, 'interp/frame_indices'),
                                int(fixture['interp/keyframe_stride']))
    torch.testing.assert_close(out, ref(fixture, 'interp/interpolated'), atol=1e-12, rtol=0)
    with pytest.raises(ValueError):
        interpolate_keyframes(torch.zeros(3, 2), torch.tensor([1, 2, 3]), 5)


@pytest.mark.parametrize('name', ['window_a', 'window_b'])
def test_evaluation_windows(fixture, name):
    frames, seq_len, stride, mask_stride = (int(v) for v in fixture[f'{name}/config'])
    index, valid, mask = evaluation_windows(frames, ref(fixture, f'{name}/center_index'), seq_len,
                                            stride, mask_stride)
    assert torch.equal(index, ref(fixture, f'{name}/frame_index'))
    assert torch.equal(valid, ref(fixture, f'{name}/valid_mask'))
    assert torch.equal(mask, ref(fixture, f'{name}/stride_mask'))


def test_predict_sequence_equals_windowed_lift():
    """predict_sequence (shared spatial stage, keyframes only) = lifting every official window
    on the s_out grid and interpolating, and the generic engine path agrees in shape."""
    torch.manual_seed(0)
    net = build_model('uplift_upsample', num_frame=9, sequence_stride=2, mask_stride=[4, 8],
                      strides=[3, 3], paddings=[[0, 0], [0, 0]], spatial_dim=8, temporal_dim=16,
                      num_heads=2, spatial_depth=1, temporal_depth=2).eval()
    x = torch.randn(2, 31, 17, 2)
    for mask_stride in (4, 8):
        centres = torch.arange(0, 31, 2)
        index, _, mask = evaluation_windows(31, centres, 9, 2, mask_stride)
        with torch.no_grad():
            centre = torch.stack([net.lift(x[:, index[w]], mask[w].expand(2, -1))[1]
                                  for w in range(len(centres))], 1)
            dense = torch.zeros(2, 31, 17, 3)
            dense[:, centres] = centre
            expected = interpolate_keyframes(dense.transpose(0, 1), torch.arange(31), 2).transpose(0, 1)
            got = net.predict_sequence(x, max_batch=7, mask_stride=mask_stride)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert net.receptive_field == 17 and net(x[:, :17]).shape == (2, 1, 17, 3)


def _arrays_from_table(table, names=None):
    arrays = OrderedDict()
    position = 0
    for layer in table['layers']:
        for weight in layer['weights']:
            name = names[position] if names else weight['name']
            arrays[f"{layer['group']}/{name}"] = np.zeros(weight['shape'], np.float32)
            position += 1
    return arrays


@pytest.mark.parametrize('preset,params', [('h36m_351', 10_404_902), ('h36m_351_pt', 10_404_902),
                                           ('amass_351', 10_404_902), ('h36m_81', 10_377_254)])
def test_released_layouts(reference_dir, preset, params):
    with open(os.path.join(reference_dir, 'checkpoint_keys', f'uplift_upsample_{preset}.json')) as f:
        table = json.load(f)
    assert table['num_params'] == params
    net = build_model('uplift_upsample', preset=preset)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net.receptive_field == {'h36m_81': 81}.get(preset, 351)
    tables = [_arrays_from_table(table)]
    if 'ema_model_variable_names' in table:   # h36m_81 saves its EMA copy: other inner names
        ema = _arrays_from_table(table, table['ema_model_variable_names'])
        assert list(ema) != list(tables[0])
        tables.append(ema)
    for arrays in tables:
        assert len(arrays) == table['num_variables']
        state = uplift_state_dict_from_h5(arrays, net)   # checks keys and shapes
        assert sum(v.numel() for v in state.values()) == params
        assert uplift_options_from_h5(arrays)['preset'] in (preset, 'h36m_351')
