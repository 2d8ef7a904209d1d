"""--resume FILE resolves inside -c DIR, as --evaluate does (VideoPose3D / PoseRetNet convention)."""
import os

import pytest

from common.train.checkpoint import read_checkpoint
from helpers_data import assert_same_weights, run_inprocess, tiny_args, write_tiny_h36m


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('data'))


def test_resume_name_inside_checkpoint_dir_equals_uninterrupted(data_dir, tmp_path, monkeypatch):
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'straight', epochs=2, steps=6))
    assert code == 0, err
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'split', epochs=1, steps=6))
    assert code == 0, err
    monkeypatch.chdir(tmp_path)  # 'latest.pt' does not exist as given: it is read from -c DIR
    assert not os.path.exists('latest.pt')
    code, out, err = run_inprocess(tiny_args(data_dir, tmp_path / 'split', '--resume', 'latest.pt',
                                             epochs=2, steps=6))
    assert code == 0, err
    assert 'resumed from' in out and 'split' in out.split('resumed from', 1)[1].splitlines()[0]
    straight = read_checkpoint(str(tmp_path / 'straight' / 'latest.pt'))
    resumed = read_checkpoint(str(tmp_path / 'split' / 'latest.pt'))
    assert resumed['epoch'] == straight['epoch'] == 2
    assert_same_weights(straight['model'], resumed['model'])


def test_resume_path_as_given_wins_and_missing_is_one_line(data_dir, tmp_path, monkeypatch):
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'a', epochs=1, steps=3))
    assert code == 0, err
    monkeypatch.chdir(tmp_path)
    # an existing path as given is taken even though -c names another directory
    code, out, err = run_inprocess(tiny_args(data_dir, tmp_path / 'b', '--resume', 'a/latest.pt',
                                             epochs=2, steps=3))
    assert code == 0, err
    assert read_checkpoint(str(tmp_path / 'b' / 'latest.pt'))['epoch'] == 2
    code, _, err = run_inprocess(tiny_args(data_dir, tmp_path / 'c', '--resume', 'nothing.pt', epochs=2))
    assert code == 2 and err.count('\n') == 1 and 'nothing.pt' in err
