"""Bad inputs: each gives one 'error: ...' line on stderr, a non-zero status, no traceback,
and leaves an existing checkpoint directory untouched. Run in-process (runner.main)."""
import shutil

import numpy as np
import pytest

from helpers_data import (file_digests, run_inprocess, single_thread, tiny_args,  # noqa: F401
                          write_tiny_h36m)


@pytest.fixture(scope='module')
def good_data(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('good'), frames=60)


@pytest.fixture(scope='module')
def trained(good_data, tmp_path_factory):
    """A checkpoint directory from a short training run; every bad command points -c here."""
    directory = tmp_path_factory.mktemp('trained') / 'ck'
    code, _, err = run_inprocess(tiny_args(good_data, directory, epochs=1, steps=3))
    assert code == 0, err
    return directory


@pytest.fixture
def broken_data(good_data, tmp_path):
    directory = tmp_path / 'data'
    shutil.copytree(good_data, directory)
    return directory


def assert_one_line_error(argv, checkpoint_dir, expected, code=2):
    before = file_digests(checkpoint_dir)
    status, _, err = run_inprocess(argv)
    lines = err.strip().splitlines()
    assert status == code, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert all(text in lines[0] for text in expected), lines[0]
    assert 'Traceback' not in err
    assert file_digests(checkpoint_dir) == before
    return lines[0]


def test_missing_data_file(trained, tmp_path):
    assert_one_line_error(tiny_args(tmp_path / 'empty', trained), trained,
                          ['data_3d_h36m.npz', 'not found'])


def test_truncated_npz(broken_data, trained):
    path = broken_data / 'data_3d_h36m.npz'
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    assert_one_line_error(tiny_args(broken_data, trained), trained, ['data_3d_h36m.npz', 'truncated or corrupted'])


def test_corrupted_npz(broken_data, trained):
    """A well-formed zip whose entry holds a damaged pickle (the CRC matches the damage)."""
    import io
    import zipfile
    entry = io.BytesIO()
    np.lib.format.write_array(entry, np.array({'S1': {'Walking': np.zeros((5, 32, 3), np.float32)}}, dtype=object),
                              allow_pickle=True)
    data = bytearray(entry.getvalue())
    body = data.index(b'\n') + 1  # end of the .npy header, start of the pickle
    data[body + 4:body + 40] = b'\xff' * 36
    with zipfile.ZipFile(broken_data / 'data_3d_h36m.npz', 'w') as archive:
        archive.writestr('positions_3d.npy', bytes(data))
    assert_one_line_error(tiny_args(broken_data, trained), trained, ['data_3d_h36m.npz', 'corrupted'])


def test_npz_with_wrong_keys(broken_data, trained):
    np.savez(broken_data / 'data_3d_h36m.npz', poses=np.zeros((3, 32, 3)))
    assert_one_line_error(tiny_args(broken_data, trained), trained, ["expected ['positions_3d']"])


def test_2d_with_wrong_number_of_joints(trained, tmp_path):
    data = write_tiny_h36m(tmp_path / 'data', frames=30, num_joints_2d=16)
    assert_one_line_error(tiny_args(data, trained), trained, ['(30, 16, 2)', 'expected (N, 17, 2)'])


def test_nan_in_2d_input(trained, tmp_path):
    data = write_tiny_h36m(tmp_path / 'data', frames=30, corrupt='nan')
    assert_one_line_error(tiny_args(data, trained), trained, ['NaN or inf', 'frames [3]'])


def test_unknown_keypoints(good_data, trained):
    assert_one_line_error(tiny_args(good_data, trained, '-k', 'no_such_detector'), trained,
                          ["unknown -k 'no_such_detector'"])


def test_unknown_model(good_data, trained):
    assert_one_line_error(tiny_args(good_data, trained, '--model', 'no_such_model'), trained,
                          ["unknown model 'no_such_model'", 'videopose'])


def test_flags_that_contradict_the_checkpoint(good_data, trained):
    """The file decides the architecture: a flag that contradicts it is named, with what to do."""
    line = assert_one_line_error(tiny_args(good_data, trained, '--model', 'videopose', '-ch', '16',
                                           '--evaluate', 'latest.pt'), trained, ['channels=32', 'channels=16'])
    assert 'drop those flags' in line


def test_checkpoint_of_another_model(good_data, trained):
    mixste = ('--model', 'mixste', '-f', '9', '-cs', '16', '-dep', '1')
    assert_one_line_error(tiny_args(good_data, trained, *mixste, '--evaluate', 'latest.pt'), trained,
                          ['--model mixste, but the checkpoint holds videopose', 'drop --model'])


def test_resume_pointing_at_nothing(good_data, trained, tmp_path):
    new_dir = tmp_path / 'new_run'
    assert_one_line_error(tiny_args(good_data, new_dir, '--resume', tmp_path / 'nothing.pt'), trained,
                          ['nothing.pt', 'does not exist'])
    assert not new_dir.exists()  # refused before anything was created


def test_resume_from_a_file_that_is_not_a_training_checkpoint(good_data, trained, tmp_path):
    import torch
    from common.train.checkpoint import read_checkpoint
    official = tmp_path / 'pretrained_h36m.bin'
    torch.save({'model_pos': read_checkpoint(str(trained / 'latest.pt'))['model']}, official)
    assert_one_line_error(tiny_args(good_data, trained, '--resume', official), trained,
                          ['not a training checkpoint'])


def test_unwritable_output_directory(good_data, trained, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('keep me')
    assert_one_line_error(tiny_args(good_data, blocker / 'checkpoints', epochs=1, steps=1), trained,
                          ['cannot write the checkpoint directory', 'Not a directory'])
    assert blocker.read_text() == 'keep me'


def test_resume_with_evaluate_conflict(good_data, trained):
    assert_one_line_error(tiny_args(good_data, trained, '--resume', trained / 'latest.pt', '--evaluate', 'latest.pt'),
                          trained, ['--resume', '--evaluate'])


def test_refused_unsafe_checkpoint_on_the_command_line(good_data, trained, tmp_path):
    import torch
    marker = tmp_path / 'created'

    class CreatesFile:
        def __reduce__(self):
            return open, (str(marker), 'w')
    torch.save({'model_pos': {'w': torch.zeros(1)}, 'x': CreatesFile()}, tmp_path / 'evil.pt')
    assert_one_line_error(tiny_args(good_data, trained, '--evaluate', tmp_path / 'evil.pt'), trained,
                          ['refers to io.open', '--trust-checkpoint'])
    assert not marker.exists()


@pytest.mark.parametrize('model_flags', [('-arc', '3,3,3'), ('--model', 'mixste', '-f', '27', '-cs', '16', '-dep', 1)],
                         ids=['videopose-centre', 'mixste-seq2seq'])
def test_sequence_shorter_than_receptive_field_is_padded(model_flags, tmp_path):
    """Streams of 5 frames (receptive field 27) train and evaluate: edge-padded, scored on 5 frames."""
    data = write_tiny_h36m(tmp_path / 'data', frames=40, short_action=('Sitting', 5))
    argv = tiny_args(data, tmp_path / 'ck', *model_flags, '--results-json', tmp_path / 'r.json', epochs=1, steps=2)
    code, out, err = run_inprocess(argv)
    assert code == 0, err
    import json
    results = json.load(open(tmp_path / 'r.json'))
    assert results['per_action']['Sitting']['frames'] == 5 * 4
    assert np.isfinite(results['per_action']['Sitting']['mpjpe'])


@pytest.mark.parametrize('flags, expected', [
    (['-e=-1'], ['-e/--epochs', 'must be an integer >= 0 (0: evaluate only), got -1']),
    (['-b=-5'], ['-b/--batch-size', 'must be a positive integer, got -5']),
    (['-b', '0'], ['-b/--batch-size', 'must be a positive integer, got 0']),
    (['-lr=-1e-3'], ['-lr/--lr', 'must be a number > 0, got -1e-3']),
    (['-lr', '-1e-3'], ['-lr/--lr', 'must be a number > 0, got -1e-3']),
    (['-lr', '0'], ['-lr/--lr', 'must be a number > 0, got 0']),
    (['-f', '0'], ['-f/--frames', 'must be a positive integer, got 0']),
    (['--model', 'mixste', '-f', '0'], ['-f/--frames', 'must be a positive integer, got 0']),
    (['--epoch', '3'], ['unrecognized argument --epoch; did you mean --epochs?', 'cannot be abbreviated']),
    (['--recipe', 'pstmo_s_3dhp_stage1'], ["recipe 'pstmo_s_3dhp_stage1' is for run_3dhp.py, not run.py"]),
], ids=lambda v: ' '.join(v) if isinstance(v, list) and v and v[0].startswith('-') else None)
def test_bad_values_are_refused_when_parsing(flags, expected, good_data, trained):
    line = assert_one_line_error(tiny_args(good_data, trained, *flags), trained, expected)
    assert 'expected one argument' not in line


def test_root_path_that_is_a_file_is_refused_when_parsing(good_data, trained):
    path = f'{good_data}/data_3d_h36m.npz'
    assert_one_line_error(tiny_args(good_data, trained, '--root_path', path), trained,
                          [f"'{path}' is a file, not a directory"])
