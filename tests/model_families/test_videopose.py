"""VideoPose3D: official checkpoint layout, strided == dilated form, sequence padding, causality."""
import pytest
import torch

from common.train.checkpoint import load_checkpoint
from models.windows import centre_windows
from models import build_model
from models.videopose import detect_official

SMALL = dict(filter_widths=[3, 5, 3], num_joints=17, channels=32)


def randomise(model, seed=0):
    """Random weights and BatchNorm statistics, so that every tensor affects the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point:
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if 'running_var' in name:
                tensor.copy_(1 + 0.5 * noise.abs())
            elif name.endswith('bn.weight') or ('layers_bn' in name and name.endswith('weight')):
                tensor.copy_(1 + 0.2 * noise)
            else:
                tensor.copy_(0.1 * noise)
    return model.eval()


def small_model(seed=0, **overrides):
    return randomise(build_model('videopose', **{**SMALL, **overrides}), seed)


def clip(frames, batch=2, seed=1):
    return torch.randn(batch, frames, 17, 2, generator=torch.Generator().manual_seed(seed)) * 0.5


def test_receptive_field():
    assert build_model('videopose', filter_widths=[3, 3, 3, 3, 3], channels=8).receptive_field == 243
    assert build_model('videopose', filter_widths=[3, 3, 3], channels=8).receptive_field == 27
    assert small_model().receptive_field == 45
    assert small_model().predicts == 'centre'
    with pytest.raises(ValueError):
        build_model('videopose', filter_widths=[3, 4])
    with pytest.raises(TypeError):
        build_model('videopose', num_frame=27)


def test_official_parameter_names():
    keys = list(build_model('videopose', filter_widths=[3, 3, 3], channels=8).state_dict())
    bn = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    expected = (['expand_conv.weight'] + [f'expand_bn.{n}' for n in bn]
                + [f'layers_conv.{i}.weight' for i in range(4)]
                + [f'layers_bn.{i}.{n}' for i in range(4) for n in bn] + ['shrink.weight', 'shrink.bias'])
    assert sorted(keys) == sorted(expected)


def test_official_checkpoint_roundtrip(tmp_path):
    source = small_model(seed=3)
    path = tmp_path / 'epoch_80.bin'
    optimizer = torch.optim.Adam(source.parameters(), lr=1e-3, amsgrad=True)
    torch.save({'epoch': 80, 'lr': 1e-5, 'optimizer': optimizer.state_dict(),
                'model_pos': source.state_dict()}, path)
    config = detect_official(torch.load(path, weights_only=True)['model_pos'])
    assert config == {'filter_widths': [3, 5, 3], 'channels': 32, 'num_joints': 17}
    model = load_checkpoint(build_model('videopose', **config), str(path))
    assert not model.training
    x = clip(45)
    torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)


def test_old_checkpoint_without_batch_counters():
    source = small_model(seed=4)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith('num_batches_tracked')}
    model = load_checkpoint(build_model('videopose', **SMALL), {'epoch': 1, 'model_pos': state})
    x = clip(45)
    torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)


def test_detect_official_variants():
    model = build_model('videopose', filter_widths=[3, 3, 3, 3, 3], num_joints=16, channels=16,
                        num_joints_out=17)
    assert detect_official(model.state_dict()) == {
        'filter_widths': [3, 3, 3, 3, 3], 'channels': 16, 'num_joints': 17, 'num_joints_in': 16}
    assert detect_official({'blocks.0.weight': torch.zeros(3)}) is None
    assert detect_official({**model.state_dict(), 'head.weight': torch.zeros(3)}) is None


@pytest.mark.parametrize('causal', [False, True])
def test_strided_equals_dilated(causal):
    model = small_model(causal=causal)
    extra = 12
    x = clip(model.receptive_field + extra - 1)
    with torch.no_grad():
        dilated = model(x)                                     # [B, extra, J, 3]
        windows = x.unfold(1, model.receptive_field, 1)        # [B, extra, J, 2, rf]
        windows = windows.permute(0, 1, 4, 2, 3).flatten(0, 1)
        strided = model(windows).reshape(dilated.shape)
    assert dilated.shape == (2, extra, 17, 3)
    assert dilated.abs().max() > 0.1
    torch.testing.assert_close(strided, dilated, atol=1e-5, rtol=0)


def test_sequence_equals_centre_windows():
    model = small_model()
    x = clip(70)
    with torch.no_grad():
        whole = model.predict_sequence(x)
        windows = centre_windows(x, model.receptive_field)
        per_window = model(windows).reshape(2, 70, 17, 3)
    assert whole.shape == (2, 70, 17, 3)
    torch.testing.assert_close(whole, per_window, atol=1e-5, rtol=0)


def test_short_sequence_is_padded():
    model = small_model()
    x = clip(5)
    with torch.no_grad():
        whole = model.predict_sequence(x)
        per_window = model(centre_windows(x, model.receptive_field)).reshape(2, 5, 17, 3)
    torch.testing.assert_close(whole, per_window, atol=1e-5, rtol=0)


def test_causal_uses_only_past_frames():
    model = small_model(causal=True)
    rf = model.receptive_field
    x = clip(60)
    changed = x.clone()
    changed[:, 30] += 1.0
    with torch.no_grad():
        before, after = model.predict_sequence(x), model.predict_sequence(changed)
        # frame t is predicted from frames t - (rf - 1) .. t, the first frame repeated before 0
        index = (torch.arange(60)[:, None] + torch.arange(-(rf - 1), 1)).clamp(min=0)
        last_of_window = model(x[:, index].flatten(0, 1)).reshape(2, 60, 17, 3)
    torch.testing.assert_close(before[:, :30], after[:, :30], atol=0, rtol=0)
    assert (before[:, 30] - after[:, 30]).abs().max() > 1e-3
    torch.testing.assert_close(before, last_of_window, atol=1e-5, rtol=0)


def test_dense_ablation_runs_one_form():
    model = small_model(dense=True, filter_widths=[3, 3, 3])
    assert model.layers_conv[0].kernel_size == (7,) and model.layers_conv[2].kernel_size == (19,)
    x = clip(40)
    with torch.no_grad():
        whole = model.predict_sequence(x)
        per_window = model(centre_windows(x, 27)).reshape(2, 40, 17, 3)
    torch.testing.assert_close(whole, per_window, atol=1e-5, rtol=0)


def test_training_window_backward():
    model = small_model()
    model.train()
    model.set_bn_momentum(0.05)
    out = model(clip(45, batch=4))
    assert out.shape == (4, 1, 17, 3)
    out.square().mean().backward()
    assert model.expand_conv.weight.grad is not None and model.layers_bn[0].momentum == 0.05
