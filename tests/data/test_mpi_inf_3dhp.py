"""MPI-INF-3DHP readers on small files in both public layouts, the official protocol on
hand-made predictions, the export files, and run_3dhp.py end to end."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from common.data.datasets import DataConfig, load_dataset
from common.errors import UserError
from common.eval.evaluation import EVALUATORS, export_results, format_results
from common.eval.metrics import MPII3D_14_FROM_17
from conftest import ROOT

PERFECT_AUC = 100.0 * 30 / 31


def poses_mm(rng, n, joints=17):
    """[n, J, 3] camera-frame poses in mm, about 4 m in front of the camera."""
    pose = rng.normal(0, 300, (n, joints, 3))
    pose[..., 2] += 4000
    return pose


def pixels(pose, width, height):
    """A rough pinhole projection to pixels of a width x height image: [n, J, 2]."""
    return np.stack([1000 * pose[..., 0] / pose[..., 2] + width / 2,
                     1000 * pose[..., 1] / pose[..., 2] + height / 2], -1)


def write_pstmo(directory, rng, joints=17, test_names=('TS1', 'TS5'), lengths=(12, 9), activity=None):
    """data_train_3dhp.npz (S1 Seq1 cameras 0 and 2, S2 Seq2 camera 1) and data_test_3dhp.npz."""
    def camera(n):
        pose = poses_mm(rng, n, joints)
        return {'data_2d': pixels(pose, 2048, 2048), 'data_3d': pose}
    train = {'S1 Seq1': [{'0': camera(10), '2': camera(7)}, 25], 'S2 Seq2': [{'1': camera(8)}, 50]}
    test = {}
    for name, n in zip(test_names, lengths):
        pose = poses_mm(rng, n, joints)
        size = (1920, 1080) if name in ('TS5', 'TS6') else (2048, 2048)
        valid = np.ones(n)
        valid[[0, 3]] = 0
        test[name] = {'data_2d': pixels(pose, *size), 'data_3d': pose, 'valid': valid}
    np.savez(os.path.join(directory, 'data_train_3dhp.npz'), data=train)
    np.savez(os.path.join(directory, 'data_test_3dhp.npz'), data=test)
    if activity is not None:
        np.savez(os.path.join(directory, 'data_test_3dhp_activity.npz'), **activity)
    return train, test


def write_retnet(directory, rng, joints=14):
    """data_3d_mpii3d.npz + data_2d_mpii3d_gt.npz: TS0 (two segments), TS2 and TS6 (one each)."""
    poses3d, poses2d = {}, {}
    for subject, videos in (('TS0', {'subj1_seq1_vid0_seg0': 11, 'subj1_seq1_vid0_seg1': 6}),
                            ('TS2', {'subj2_seg0': 9}), ('TS6', {'subj6_seg0': 10})):
        poses3d[subject], poses2d[subject] = {}, {}
        for video, n in videos.items():
            absolute = poses_mm(rng, n, joints)
            size = (1920, 1080) if subject == 'TS6' else (2048, 2048)
            flag = np.ones((n, joints, 1)) if subject == 'TS0' else np.repeat(
                (np.arange(n) % 3 != 0).astype(float)[:, None, None], joints, 1)
            poses2d[subject][video] = [np.concatenate([pixels(absolute, *size), flag], -1)]
            poses3d[subject][video] = (absolute - absolute.mean(1, keepdims=True)) / 1000
    metadata = {'layout_name': 'mpii3d', 'num_joints': 14,
                'keypoints_symmetry': [[3, 4, 5, 9, 10, 11], [0, 1, 2, 6, 7, 8]]}
    np.savez(os.path.join(directory, 'data_3d_mpii3d.npz'), positions_3d=poses3d)
    np.savez(os.path.join(directory, 'data_2d_mpii3d_gt.npz'), positions_2d=poses2d, metadata=metadata)
    return poses3d, poses2d


def load(directory, dataset='3dhp', **kw):
    return load_dataset(DataConfig(dataset=dataset, root_path=str(directory), **kw))


# ----------------------------------------------------------------------------- readers

def test_pstmo_reader_units_roots_and_normalisation(tmp_path, capsys):
    train_files, test_files = write_pstmo(tmp_path, np.random.default_rng(0))
    train, test, spec = load(tmp_path)
    assert 'per-activity tables are omitted' in capsys.readouterr().out
    assert (spec.name, spec.root_joint, spec.evaluator, spec.num_joints) == ('mpii3d_univ', 14, 'mpi_inf_3dhp', 17)
    assert [(s.subject, s.action, s.camera) for s in train] == [
        ('S1', 'Seq1', 0), ('S1', 'Seq1', 2), ('S2', 'Seq2', 1)]
    raw = train_files['S1 Seq1'][0]['2']
    seq = train[1]
    assert seq.pose2d.shape == (7, 17, 2) and seq.pose3d.shape == (7, 17, 3) and seq.pose2d.dtype == np.float32
    np.testing.assert_allclose(seq.trajectory, raw['data_3d'][:, 14] / 1000, rtol=1e-6)
    assert np.all(seq.pose3d[:, 14] == 0)
    np.testing.assert_allclose(seq.pose3d[:, 3], (raw['data_3d'][:, 3] - raw['data_3d'][:, 14]) / 1000, atol=1e-6)
    np.testing.assert_allclose(seq.pose2d, raw['data_2d'] / 1024 - 1, atol=1e-6)
    assert seq.valid is None and seq.image_size == (2048, 2048)

    assert [s.group for s in test] == ['TS1', 'TS5']
    ts5, raw5 = test[1], test_files['TS5']
    assert ts5.image_size == (1920, 1080) and ts5.valid.dtype == bool
    np.testing.assert_array_equal(ts5.valid, raw5['valid'] > 0)
    np.testing.assert_allclose(ts5.pose2d[..., 0], raw5['data_2d'][..., 0] * 2 / 1920 - 1, atol=1e-6)
    np.testing.assert_allclose(ts5.pose2d[..., 1], raw5['data_2d'][..., 1] * 2 / 1920 - 1080 / 1920, atol=1e-6)
    assert ts5.labels is None


def test_pstmo_reader_filters(tmp_path):
    write_pstmo(tmp_path, np.random.default_rng(1))
    train, test, _ = load(tmp_path, subjects_train=['S2'], subjects_test=['TS5'])
    assert [s.subject for s in train] == ['S2'] and [s.group for s in test] == ['TS5']
    assert len(load(tmp_path, subjects_train=['TS0'])[0]) == 3  # PoseRetNet's spelling of "all"
    assert [s.action for s in load(tmp_path, actions=['Seq2'])[0]] == ['Seq2']
    with pytest.raises(UserError, match='training subject S9 not in'):
        load(tmp_path, subjects_train=['S9'])
    with pytest.raises(UserError, match='test sequence TS3 not in'):
        load(tmp_path, subjects_test=['TS3'])


def test_activity_side_file(tmp_path):
    labels_ts1 = np.arange(12) % 7 + 1
    write_pstmo(tmp_path, np.random.default_rng(2), activity={'TS1': labels_ts1, 'TS5': np.full(7, 3)})
    _, test, _ = load(tmp_path)
    np.testing.assert_array_equal(test[0].labels, labels_ts1)
    # TS5 holds labels of its 7 valid frames only: spread over the 9 frames
    assert test[1].labels[test[1].valid].tolist() == [3] * 7


@pytest.mark.parametrize('dataset', ['3dhp', 'mpii3d'])
def test_test_only_reads_no_training_streams(tmp_path, dataset):
    (write_pstmo if dataset == '3dhp' else write_retnet)(tmp_path, np.random.default_rng(4))
    train, test, _ = load(tmp_path, dataset)
    only_train, only_test, _ = load(tmp_path, dataset, test_only=True)
    assert train and only_train == [] and len(only_test) == len(test)
    assert all(np.array_equal(a.pose2d, b.pose2d) for a, b in zip(test, only_test))


def test_retnet_reader(tmp_path, capsys):
    poses3d, poses2d = write_retnet(tmp_path, np.random.default_rng(3))
    train, test, spec = load(tmp_path, 'mpii3d', subjects_test=['TS2', 'TS6'])
    assert (spec.name, spec.root_joint, spec.num_joints) == ('mpii3d', None, 14)
    assert spec.joint_index_3dhp == MPII3D_14_FROM_17 and spec.kps_left == (3, 4, 5, 9, 10, 11)
    assert [s.action for s in train] == ['subj1_seq1_vid0_seg0', 'subj1_seq1_vid0_seg1']
    assert all(s.valid is None and s.pose2d.shape[-1] == 2 for s in train)
    ts6 = test[1]
    assert ts6.group == 'TS6' and ts6.pose2d.shape == (10, 14, 2) and ts6.image_size == (1920, 1080)
    np.testing.assert_allclose(ts6.pose3d, poses3d['TS6']['subj6_seg0'], atol=1e-6)  # metres, unchanged
    raw = poses2d['TS6']['subj6_seg0'][0]
    np.testing.assert_allclose(ts6.pose2d[..., 1], raw[..., 1] * 2 / 1920 - 1080 / 1920, atol=1e-6)
    np.testing.assert_allclose(train[0].pose2d, poses2d['TS0']['subj1_seq1_vid0_seg0'][0][..., :2] / 1024 - 1,
                               atol=1e-6)
    np.testing.assert_array_equal(ts6.valid, np.arange(10) % 3 != 0)
    assert 'per-activity tables are omitted' in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad inputs

def test_missing_files_say_where_they_come_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dataset/ fallback folder here
    with pytest.raises(UserError, match="P-STMO.*-d synthetic"):
        load(tmp_path)
    with pytest.raises(UserError, match="preprocess_mpii3d.py.*-d synthetic"):
        load(tmp_path, 'mpii3d')


def test_wrong_structure_and_joint_counts(tmp_path):
    rng = np.random.default_rng(4)
    write_pstmo(tmp_path, rng, joints=16)
    with pytest.raises(UserError, match='16 joints, expected 17'):
        load(tmp_path)
    write_pstmo(tmp_path, rng)
    np.savez(tmp_path / 'data_test_3dhp.npz', positions=np.zeros(3))
    with pytest.raises(UserError, match="entries .*'positions'.* expected .*'data'"):
        load(tmp_path)
    np.savez(tmp_path / 'data_test_3dhp.npz', data={'TS1': {'data_2d': np.zeros((4, 17, 2)),
                                                             'data_3d': np.zeros((4, 17, 3))}})
    with pytest.raises(UserError, match="TS1 should hold 'data_2d', 'data_3d' and 'valid'"):
        load(tmp_path)
    write_retnet(tmp_path, rng, joints=17)
    with pytest.raises(UserError, match='17 joints, expected 14.*-d 3dhp'):
        load(tmp_path, 'mpii3d')


def test_nan_2d_is_refused(tmp_path):
    train, test = write_pstmo(tmp_path, np.random.default_rng(5))
    test['TS1']['data_2d'][4, 2, 0] = np.nan
    np.savez(tmp_path / 'data_test_3dhp.npz', data=test)
    with pytest.raises(UserError, match=r'NaN or inf 2D keypoints in TS1 \(frames \[4\]'):
        load(tmp_path)


# ----------------------------------------------------------------------------- protocol

@pytest.fixture
def pstmo_data(tmp_path):
    write_pstmo(tmp_path, np.random.default_rng(6), activity={'TS1': np.array([1] * 6 + [2] * 6),
                                                              'TS5': np.full(9, 2)})
    return load(tmp_path)


def targets(sequences, spec):
    out = []
    for seq in sequences:
        target = seq.pose3d.astype(np.float64).copy()
        if spec.root_joint is not None:
            target[:, spec.root_joint] = 0
        out.append(target)
    return out


def test_perfect_prediction(pstmo_data):
    _, test, spec = pstmo_data
    results = EVALUATORS['mpi_inf_3dhp'](test, targets(test, spec), spec, False)
    assert results['protocol'] == 'mpi_inf_3dhp' and results['score_name'] == 'MPJPE'
    assert results['mpjpe'] == results['score'] == 0
    assert results['pck'] == pytest.approx(100) and results['auc'] == pytest.approx(PERFECT_AUC)
    assert results['frames'] == 10 + 7
    assert set(results['per_sequence']) == {'TS1', 'TS5'}
    assert set(results['per_activity']) == {'Standing/Walking', 'Exercising'}
    # TS1 frames 0 and 3 are invalid: Standing/Walking keeps 1, 2, 4, 5; Exercising TS1 6..11 and TS5's 7
    assert results['per_activity']['Standing/Walking']['frames'] == 4
    assert results['per_activity']['Exercising']['frames'] == 6 + 7


def constant_error(sequences, spec, mm, root_offset_mm=0.0):
    """Targets plus ``mm`` along x on every joint but the root; the root moved by root_offset_mm."""
    preds = []
    for target in targets(sequences, spec):
        pred = target.copy()
        pred[..., 0] += mm / 1000
        if spec.root_joint is not None:
            pred[:, spec.root_joint] = target[:, spec.root_joint] + [root_offset_mm / 1000, 0, 0]
        preds.append(pred)
    return preds


def test_constant_error_on_non_root_joints(pstmo_data):
    # 102 mm, not 100: an error of exactly one threshold would depend on float rounding
    _, test, spec = pstmo_data
    results = EVALUATORS['mpi_inf_3dhp'](test, constant_error(test, spec, 102, root_offset_mm=30), spec, False)
    # PCK: 102 < 150 for all 14 protocol joints; AUC: 102 < t for t = 105..150, 10 of 31 thresholds
    assert results['pck'] == pytest.approx(100) and results['auc'] == pytest.approx(1000 / 31)
    assert results['mpjpe'] == pytest.approx((16 * 102 + 30) / 17)  # root scored as predicted
    assert results['all']['per_joint'][14] == pytest.approx(30)
    zeroed = EVALUATORS['mpi_inf_3dhp'](test, constant_error(test, spec, 102, root_offset_mm=30), spec, True)
    assert zeroed['mpjpe'] == pytest.approx(16 * 102 / 17)
    results = EVALUATORS['mpi_inf_3dhp'](test, constant_error(test, spec, 160), spec, False)
    assert results['pck'] == 0 and results['auc'] == 0


def test_frame_weighting_differs_from_plain_mean(pstmo_data):
    _, test, spec = pstmo_data
    preds = constant_error(test, spec, 170)
    preds[0] = constant_error(test[:1], spec, 51)[0]           # TS1: 10 valid frames at 51 mm
    preds[1][~test[1].valid] += 5.0                            # invalid frames are never scored
    results = EVALUATORS['mpi_inf_3dhp'](test, preds, spec, False)
    per_seq = {k: v['mpjpe'] for k, v in results['per_sequence'].items()}
    assert per_seq['TS1'] == pytest.approx(51 * 16 / 17) and per_seq['TS5'] == pytest.approx(170 * 16 / 17)
    assert results['mpjpe'] == pytest.approx((10 * 51 + 7 * 170) * 16 / 17 / 17)
    assert results['sequence_mean']['mpjpe'] == pytest.approx((51 + 170) / 2 * 16 / 17)
    assert results['pck'] == pytest.approx(100 * 10 / 17)  # TS1 all under 150 mm, TS5 none
    assert results['sequence_mean']['pck'] == pytest.approx(50)
    text = format_results(results)
    assert 'TestSeq1' in text and 'Exercising' in text and 'All (frame-weighted' in text


def test_fourteen_joint_protocol(tmp_path):
    write_retnet(tmp_path, np.random.default_rng(7))
    _, test, spec = load(tmp_path, 'mpii3d')
    perfect = EVALUATORS['mpi_inf_3dhp'](test, targets(test, spec), spec, True)
    assert perfect['pck'] == pytest.approx(100) and perfect['auc'] == pytest.approx(PERFECT_AUC)
    results = EVALUATORS['mpi_inf_3dhp'](test, constant_error(test, spec, 102), spec, True)
    assert results['mpjpe'] == pytest.approx(102)  # 14 joints, no root
    assert results['pck'] == pytest.approx(100) and results['auc'] == pytest.approx(1000 / 31)
    assert results['frames'] == 6 + 6 and results['per_activity'] == {}


# ----------------------------------------------------------------------------- export

def read_csv(path):
    with open(path, newline='') as handle:
        return list(csv.reader(handle))


def test_export_files(pstmo_data, tmp_path):
    _, test, spec = pstmo_data
    preds = constant_error(test, spec, 102, root_offset_mm=30)
    results = EVALUATORS['mpi_inf_3dhp'](test, preds, spec, False)
    out = tmp_path / 'export'
    export_results(results, test, preds, spec, str(out))

    mat = scipy.io.loadmat(out / 'inference_data.mat')
    assert mat['TS1'].shape == (3, 17, 1, 10) and mat['TS5'].shape == (3, 17, 1, 7)
    assert mat['TS1'].dtype == np.float32 and np.all(mat['TS1'][:, 14] == 0)
    expected = preds[1][test[1].valid] * 1000
    np.testing.assert_allclose(mat['TS5'][:, 3, 0].T, expected[:, 3], rtol=1e-6)

    rows = read_csv(out / 'mpii_3dhp_evaluation_sequencewise.csv')
    assert rows[0][:19] == [f'seq_table{i}' for i in range(1, 20)]
    assert rows[1][1:4] == ['head_top', 'neck', 'right_shoulder'] and rows[1][15:22] == [
        'pelvis', 'spine', 'head', 'Average', 'Frame_num', 'Sum', 'Final result']
    assert [r[0] for r in rows[2:4]] == ['TestSeq1', 'TestSeq5'] and rows[2][15] == '30' and rows[2][19] == '10'
    assert rows[4][:10] == ['PCK', 'Head', 'Neck', 'Shou', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Total']
    assert float(rows[4][21]) == pytest.approx(results['mpjpe'])           # MPJPE final result
    assert rows[7][0] == 'AUC' and float(rows[7][14]) == pytest.approx(results['pck'])
    assert float(rows[10][14]) == pytest.approx(results['auc']) and len(rows) == 11
    activity = read_csv(out / 'mpii_3dhp_evaluation_activitywise.csv')
    assert [r[0] for r in activity[2:10]] == ['Standing/Walking', 'Exercising', 'Sitting', 'Reaching/Crouching',
                                              'On The Floor', 'Sports', 'Miscellaneous', 'All']
    assert activity[4][1] == 'NaN'


def test_fourteen_joint_export_has_no_mat(tmp_path):
    write_retnet(tmp_path, np.random.default_rng(8))
    _, test, spec = load(tmp_path, 'mpii3d')
    preds = targets(test, spec)
    results = EVALUATORS['mpi_inf_3dhp'](test, preds, spec, True)
    export_results(results, test, preds, spec, str(tmp_path / 'out'))
    assert not (tmp_path / 'out' / 'inference_data.mat').exists()
    rows = read_csv(tmp_path / 'out' / 'mpii_3dhp_evaluation_sequencewise.csv')
    assert rows[2][0] == 'TestSeq2' and rows[2][15] == '' and rows[2][14] == '0'  # no pelvis column


# ----------------------------------------------------------------------------- run_3dhp.py end to end

def run_script(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'run_3dhp.py'), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_run_3dhp_train_and_evaluate_on_written_files(tmp_path, capsys):
    """In-process (cheaper than a subprocess): run_3dhp.py's preset over files written here."""
    from run_3dhp import PRESET
    from common.cli.runner import main
    write_pstmo(tmp_path, np.random.default_rng(9), lengths=(40, 30))
    common = ['--root_path', str(tmp_path), '-c', str(tmp_path / 'ck'), '-arc', '3,3', '-ch', '16', '--nolog']
    assert main([*common, '-e', '1', '-b', '16'], PRESET) == 0
    assert 'TestSeq5' in capsys.readouterr().out and (tmp_path / 'ck' / 'inference_data.mat').exists()
    os.remove(tmp_path / 'data_train_3dhp.npz')  # evaluation reads the test file only
    assert main([*common, '--evaluate', 'best.pt', '--results-json', str(tmp_path / 'r.json')], PRESET) == 0
    assert 'All (frame-weighted' in capsys.readouterr().out and (tmp_path / 'r.json').exists()
    assert main(['--root_path', str(tmp_path / 'none'), '-arc', '3', '--nolog'], PRESET) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and 'P-STMO' in error and '-d synthetic' in error


def test_run_3dhp_synthetic(tmp_path):
    synthetic = pytest.importorskip('common.data.synthetic', reason='common.data.synthetic (the generator) is not there yet')
    if not hasattr(synthetic, 'write_3dhp'):
        pytest.skip('common.data.synthetic has no write_3dhp yet: the synthetic MPI-INF-3DHP stand-in cannot be made')
    common = ['-d', 'synthetic', '--root_path', str(tmp_path / 'data'), '-c', str(tmp_path / 'ck'),
              '-arc', '3,3', '-ch', '32', '--nolog']
    trained = run_script(*common, '-e', '2', cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    evaluated = run_script(*common, '--evaluate', 'best.pt', cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert 'TestSeq6' in evaluated.stdout and 'Standing/Walking' in evaluated.stdout
    assert (tmp_path / 'ck' / 'mpii_3dhp_evaluation_sequencewise.csv').exists()
