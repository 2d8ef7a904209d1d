"""Checkpoints: safe loading (no code runs), our own files load without trust, PoseRetNet's
numpy RNG, atomic writes, wrapper prefixes, mismatch messages."""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from common.train.checkpoint import (FORMAT, atomic_save, load_checkpoint, make_checkpoint, read_checkpoint,
                                     remove_partial_files, split_checkpoint, strip_module_prefix, unwrap)
from common.errors import UserError
from models import build_model

SMALL = dict(filter_widths=[3, 3], channels=16, num_joints=17)


class _CreatesFile:
    """Unpickling this calls open(path, 'w'): loading would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


class _RunsShell:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}',)


@pytest.mark.parametrize('payload, global_name', [(_CreatesFile, 'open'), (_RunsShell, 'system')])
@pytest.mark.parametrize('zip_format', [True, False])
def test_code_carrying_checkpoint_is_refused_and_runs_nothing(tmp_path, payload, global_name, zip_format):
    marker = tmp_path / 'created_by_loading'
    path = tmp_path / 'evil.pt'
    torch.save({'model_pos': {'w': torch.zeros(2)}, 'extra': payload(str(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UserError) as caught:
        read_checkpoint(str(path))
    message = str(caught.value)
    assert '\n' not in message and global_name in message and '--trust-checkpoint' in message
    assert not marker.exists()
    with pytest.raises(UserError):
        load_checkpoint(build_model('videopose', **SMALL), str(path))
    assert not marker.exists()
    # trusted: full unpickling, which does run the payload (so the refusal above mattered)
    read_checkpoint(str(path), trust=True)
    assert marker.exists()


def test_our_training_checkpoint_loads_without_trust(tmp_path):
    model = build_model('videopose', **SMALL)
    optimizer = torch.optim.Adam(model.parameters(), amsgrad=True)
    model(torch.randn(2, 9, 17, 2)).sum().backward()
    optimizer.step()
    state = make_checkpoint(model, optimizer=optimizer.state_dict(), epoch=3, step=7, best=51.5,
                            history=[{'epoch': 1, 'train_loss': 0.5, 'test_ema': None}],
                            rng=[{'torch': torch.get_rng_state(), 'numpy': np.random.get_state()}],
                            running_loss=[1.5, 64.0], results={'mpjpe': np.float64(51.5), 'frames': np.int64(9)},
                            config={'model': 'videopose', 'data': {'subjects_train': ('S1', 'S5')}})
    atomic_save(state, str(tmp_path / 'latest.pt'))
    loaded = read_checkpoint(str(tmp_path / 'latest.pt'))
    assert loaded['format'] == FORMAT and loaded['epoch'] == 3 and loaded['results']['mpjpe'] == 51.5
    restored = np.random.RandomState()
    restored.set_state(loaded['rng'][0]['numpy'])
    reference = np.random.RandomState()
    reference.set_state(state['rng'][0]['numpy'])
    assert restored.randint(1 << 30) == reference.randint(1 << 30)
    other = build_model('videopose', **SMALL)
    load_checkpoint(other, str(tmp_path / 'latest.pt'))
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    torch.optim.Adam(other.parameters(), amsgrad=True).load_state_dict(loaded['optimizer'])


def test_poseretnet_random_state_loads_without_trust(tmp_path):
    """PoseRetNet saves its generator's numpy RandomState (object or state tuple) next to the weights."""
    generator = np.random.RandomState(1234)
    generator.rand(5)
    path = tmp_path / 'epoch_60.bin'
    torch.save({'epoch': 60, 'lr': 1e-4, 'random_state': generator, 'random_state_tuple': generator.get_state(),
                'model_pos': {'module.w': torch.ones(3)}}, path)
    loaded = read_checkpoint(str(path))
    assert loaded['random_state'].rand() == np.random.RandomState(1234).rand(6)[-1]
    assert loaded['random_state_tuple'][0] == 'MT19937'
    state_dict, ours, _ = split_checkpoint(loaded)
    assert not ours and list(state_dict) == ['w']


def test_atomic_save_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / 'latest.pt'
    atomic_save({'a': torch.ones(2)}, str(path))
    before = path.read_bytes()
    with pytest.raises(Exception):
        atomic_save({'a': torch.zeros(2), 'bad': lambda: None}, str(path))  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['latest.pt']
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_partial_files_are_not_checkpoints_and_get_removed(tmp_path):
    (tmp_path / '.latest.pt.0123abcd.partial').write_bytes(b'half a file')
    (tmp_path / 'best.pt').write_bytes(b'x')
    (tmp_path / 'notes.partial').write_bytes(b'not ours: no leading dot')
    assert remove_partial_files(str(tmp_path)) == ['.latest.pt.0123abcd.partial']
    assert sorted(os.listdir(tmp_path)) == ['best.pt', 'notes.partial']


def test_wrapper_prefixes_are_stripped_and_never_saved(tmp_path):
    model = build_model('videopose', **SMALL)
    plain = model.state_dict()
    prefixed = {f'module.{k}': v for k, v in plain.items()}              # nn.DataParallel / DDP
    compiled = {f'_orig_mod.module.{k}': v for k, v in plain.items()}    # torch.compile over DDP
    assert list(strip_module_prefix(prefixed)) == list(plain)
    assert list(strip_module_prefix(compiled)) == list(plain)
    assert list(strip_module_prefix({'module_a.w': 1})) == ['module_a.w']  # only whole prefixes
    for layout in ({'model_pos': prefixed}, prefixed, {**make_checkpoint(model), 'model': compiled}):
        other = build_model('videopose', **SMALL)
        load_checkpoint(other, layout)
        assert all(torch.equal(other.state_dict()[k], v) for k, v in plain.items())

    class DistributedLike(nn.Module):  # DDP keeps the model as .module, like DataParallel
        def __init__(self, module):
            super().__init__()
            self.module = module
    for wrapped in (nn.DataParallel(model), DistributedLike(model), DistributedLike(nn.DataParallel(model))):
        assert unwrap(wrapped) is model
        assert all(not k.startswith('module.') for k in make_checkpoint(wrapped)['model'])
        atomic_save(make_checkpoint(wrapped), str(tmp_path / 'w.pt'))
        assert list(read_checkpoint(str(tmp_path / 'w.pt'))['model']) == list(plain)


def test_mismatch_lists_the_first_keys_and_shapes():
    source = build_model('videopose', filter_widths=[3, 3], channels=32)
    target = build_model('videopose', filter_widths=[3, 3, 3], channels=16)
    with pytest.raises(UserError) as caught:
        load_checkpoint(target, make_checkpoint(source))
    message = str(caught.value)
    assert '\n' not in message
    assert 'expand_conv.weight: file (32, 34, 3) vs model (16, 34, 3)' in message
    assert 'missing layers_conv.2.weight' in message


def test_truncated_and_missing_files_give_one_line_errors(tmp_path):
    path = tmp_path / 'latest.pt'
    atomic_save(make_checkpoint(build_model('videopose', **SMALL)), str(path))
    path.write_bytes(path.read_bytes()[:1000])
    for bad, expected in ((path, 'unreadable or truncated'), (tmp_path / 'nothing.pt', 'does not exist'),
                          (tmp_path, 'is a directory')):
        with pytest.raises(UserError) as caught:
            read_checkpoint(str(bad))
        assert expected in str(caught.value) and '\n' not in str(caught.value)


def test_a_file_of_another_shape_is_refused_in_one_line(tmp_path):
    from common.train.checkpoint import make_checkpoint
    from models import build_model
    stored = make_checkpoint(build_model('videopose', filter_widths=[3, 3], channels=32))
    with pytest.raises(UserError) as err:
        load_checkpoint(build_model('videopose', filter_widths=[3, 3], channels=16), stored)
    assert 'does not fit model videopose (it holds videopose' in str(err.value)
    assert 'expand_conv.weight: file (32, 34, 3) vs model (16, 34, 3)' in str(err.value) and '\n' not in str(err.value)


def test_a_text_file_is_named_as_such(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('101 epochs, lr 1e-3\n')
    with pytest.raises(UserError) as err:
        read_checkpoint(str(path))
    assert 'is a text file, not a PyTorch checkpoint' in str(err.value) and 'torch.save' in str(err.value)
