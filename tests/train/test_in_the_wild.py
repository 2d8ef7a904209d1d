"""Training on COCO-layout detections of Human3.6M (-k detectron_pt_coco): the synthetic file, the
reader (probability channel cut), flips with the input layout's pairs on the 2D and the output
layout's on the 3D, VideoPose3D's command and run_in_the_wild.py's two stages at small size."""
import os

import numpy as np
import pytest
import torch

from common.data.datasets import DataConfig, load_dataset
from common.data.generators import WindowConfig, WindowDataset
from common.data.pose_codec import normalize_screen_coordinates
from common.data.records import DatasetSpec, Sequence
from common.data.skeleton import COCO_17, H36M_17
from common.data.synthetic_coco import COCO_FILE, coco_points
from common.eval.evaluation import EvalConfig, predict_all
from common.train.checkpoint import read_checkpoint
from helpers_data import captured, load_script, run_inprocess
from models.base import Lifter

SMALL_STMO = ['-f', 27, '--layers', 2, '--channel', 32, '--d_hid', 64, '-b', 64]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from common.data.synthetic import ensure_synthetic
    root = tmp_path_factory.mktemp('data')
    ensure_synthetic(str(root / 'synthetic'), 'h36m')
    return root


def run_in_the_wild(argv):
    """(exit status, stdout, stderr) of run_in_the_wild.py in this process."""
    from common.cli.runner import main
    preset = load_script('run_in_the_wild.py').PRESET
    return captured(lambda: main([str(a) for a in argv], preset))


def test_synthetic_coco_file_is_format_exact(data_root):
    path = os.path.join(data_root, 'synthetic', COCO_FILE)
    with np.load(path, allow_pickle=True) as archive:
        positions, meta = archive['positions_2d'].item(), archive['metadata'].item()
        gt = np.load(os.path.join(data_root, 'synthetic', 'data_2d_h36m_gt.npz'), allow_pickle=True)
        gt = gt['positions_2d'].item()
    assert meta == {'layout_name': 'coco', 'num_joints': 17,
                    'keypoints_symmetry': [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]}
    assert sorted(positions) == sorted(gt)
    repeats = 0
    for subject, actions in positions.items():
        assert sorted(actions) == sorted(gt[subject])
        for action, streams in actions.items():
            assert len(streams) == 4
            for coco, clean in zip(streams, gt[subject][action]):
                assert coco.dtype == np.float32 and coco.shape[1:] == (17, 3) and len(coco) >= len(clean)
                assert (coco[..., 2] > 0).all() and (coco[..., 2] <= 1).all()
                # COCO shoulders / hips are the Human3.6M ones, plus a few pixels of detector noise
                body = np.abs(coco[:len(clean), [5, 6, 11, 12], :2] - clean[:, [11, 14, 4, 1]])
                assert np.median(body) < 8
                repeats += int((np.diff(coco, axis=0) == 0).all(axis=(1, 2)).sum())
    assert repeats > 0  # missed frames repeat the previous pose, as the published importer


def test_face_points_from_the_head_geometry():
    """A body facing +y, z up: the nose in front of the head centre, left eye and ear on the left (-x)."""
    joints = np.zeros((1, 17, 3))
    joints[0, 8] = (0, 0, 1.5)  # thorax
    joints[0, 10] = (0, 0, 1.8)  # head top
    joints[0, 11], joints[0, 14] = (-0.2, 0, 1.5), (0.2, 0, 1.5)  # left, right shoulder
    points = coco_points(joints)[0]
    centre = np.array([0, 0, 1.5 + 0.62 * 0.3])
    np.testing.assert_allclose(points[0], centre + [0, 0.33 * 0.3, 0], atol=1e-9)
    assert points[1, 0] < 0 < points[2, 0] and points[3, 0] < 0 < points[4, 0]
    np.testing.assert_allclose(points[5], joints[0, 11])
    np.testing.assert_allclose(points[12], joints[0, 1])


def test_reader_cuts_the_probability_and_declares_coco_input(data_root):
    train, test, spec = load_dataset(DataConfig(dataset='synthetic', root_path=str(data_root),
                                                keypoints='detectron_pt_coco', actions=['Walking']))
    assert spec.input_layout == 'coco_17' and spec.keypoint_layout == 'coco_17'
    assert spec.flip_pairs == (list(COCO_17.joints_left), list(COCO_17.joints_right))
    assert spec.skeleton is H36M_17
    with np.load(os.path.join(data_root, 'synthetic', COCO_FILE), allow_pickle=True) as archive:
        stream = archive['positions_2d'].item()['S9']['Walking 1'][0]
    sequence = next(s for s in test if (s.subject, s.action, s.camera) == ('S9', 'Walking 1', 0))
    assert sequence.pose2d.shape == (len(sequence.pose3d), 17, 2)
    expected = normalize_screen_coordinates(stream[:len(sequence), :, :2], 1000, 1002)
    np.testing.assert_allclose(sequence.pose2d, expected, atol=1e-6)


def swapped(skeleton):
    """Joint order after swapping left and right."""
    order = np.arange(skeleton.num_joints)
    left, right = list(skeleton.joints_left), list(skeleton.joints_right)
    order[left + right] = right + left
    return order


def test_windows_flip_coco_2d_and_h36m_3d():
    pose2d = np.arange(17 * 2, dtype=np.float32).reshape(1, 17, 2).repeat(4, 0)
    pose3d = np.arange(17 * 3, dtype=np.float32).reshape(1, 17, 3).repeat(4, 0)
    data = WindowDataset([Sequence(pose2d, pose3d, 'S1', 'Walking', 0, 'Walking')],
                         WindowConfig('seq2frame', frames=1, flip=True, seed=0), COCO_17.flip_pairs,
                         H36M_17.flip_pairs)
    data.flipped[:] = True
    batch = data.__getitems__([0])
    coco_swapped, h36m_swapped = swapped(COCO_17), swapped(H36M_17)
    expected2d, expected3d = pose2d[0, coco_swapped].copy(), pose3d[0, h36m_swapped].copy()
    expected2d[:, 0] *= -1
    expected3d[:, 0] *= -1
    np.testing.assert_allclose(batch['input2d'][0, 0].numpy(), expected2d)
    np.testing.assert_allclose(batch['target3d'][0, 0].numpy(), expected3d)


class CocoToH36mCopy(Lifter):
    """3D joint k = (x, y, 1) of a COCO joint on the same side: equivariant under the right pairs."""
    input_layout = 'coco_17'
    SOURCE = (0, 12, 14, 16, 11, 13, 15, 0, 0, 0, 0, 5, 7, 9, 6, 8, 10)

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        picked = x[..., list(self.SOURCE), :]
        return torch.cat([picked, torch.ones_like(picked[..., :1])], -1) + self.anchor


def test_evaluation_flip_uses_each_layouts_pairs():
    rng = np.random.default_rng(0)
    pose2d = rng.uniform(-0.5, 0.5, (12, 17, 2)).astype(np.float32)
    sequence = Sequence(pose2d, np.zeros((12, 17, 3), np.float32), 'S9', 'Walking', 0, 'Walking')
    spec = DatasetSpec('h36m', H36M_17, 0, COCO_17.joints_left, COCO_17.joints_right, input_layout='coco_17')
    model = CocoToH36mCopy().eval()
    plain = predict_all(model, [sequence], spec, EvalConfig(flip=False), 'cpu')[0]
    flipped = predict_all(model, [sequence], spec, EvalConfig(flip=True), 'cpu')[0]
    np.testing.assert_allclose(plain[:, 1, :2], pose2d[:, 12], atol=1e-6)
    np.testing.assert_allclose(flipped, plain, atol=1e-6)


def test_videopose_command_on_coco_detections(data_root, tmp_path):
    """`run.py -e 80 -k detectron_pt_coco -arc 3,3,3,3,3` at small size; then the official file layout
    (pretrained_h36m_detectron_coco.bin) evaluates on the same 2D, and a COCO model is not run on
    Human3.6M-layout 2D."""
    common = ['-d', 'synthetic', '--root_path', data_root, '-a', 'Walking', '-ste', 'S9', '--nolog']
    code, out, err = run_inprocess(common + ['-e', 2, '-k', 'detectron_pt_coco', '-arc', '3,3', '-ch', 32,
                                             '-str', 'S1,S5', '-c', tmp_path])
    assert code == 0, err
    state = read_checkpoint(str(tmp_path / 'best.pt'))
    assert state['model_config']['input_layout'] == 'coco_17'
    official = tmp_path / 'pretrained_h36m_detectron_coco.bin'
    torch.save({'epoch': 80, 'lr': 1e-5, 'model_pos': {k: v for k, v in state['model'].items()}}, official)
    code, out, err = run_inprocess(common + ['-k', 'detectron_pt_coco', '-arc', '3,3', '-c', tmp_path,
                                             '--evaluate', official.name, '--results-json', tmp_path / 'r.json'])
    assert code == 0, err
    assert 'Protocol #1' in out
    code, out, err = run_inprocess(common + ['-k', 'gt', '-c', tmp_path, '--evaluate', 'best.pt'])
    assert code == 2 and err.count('\n') == 1 and 'takes coco_17 2D keypoints' in err


def test_run_in_the_wild_two_stages(data_root, tmp_path):
    """The seeds' stage I (--MAE) and stage II (--MAE_reload 1 --previous_dir) commands at small size."""
    common = ['-d', 'synthetic', '--root_path', data_root, '-a', 'Walking', '-str', 'S1,S5', '-ste', 'S9',
              '--nolog', '-e', 3, '--max-steps-per-epoch', 12, '--train', 1, '-tds', 2] + SMALL_STMO
    stage1, stage2 = tmp_path / 'stage1', tmp_path / 'stage2'
    code, out, err = run_in_the_wild(common + ['--MAE', '-tmr', 0.8, '-smn', 2, '--lr', 1e-3, '-lrd', 0.97,
                                               '-c', stage1])
    assert code == 0, err
    first = read_checkpoint(str(stage1 / 'latest.pt'))
    losses = [h['train_loss'] for h in first['history']]
    assert losses[-1] < 0.9 * losses[0], losses
    code, out, err = run_in_the_wild(common + ['--lr', 1e-3, '-lrd', 0.97, '--MAE_reload', 1,
                                               '--previous_dir', stage1 / 'best.pt', '-c', stage2])
    assert code == 0, err
    assert 'copied' in out and 'tensors from stage I checkpoint' in out
    second = read_checkpoint(str(stage2 / 'latest.pt'))
    losses = [h['train_loss'] for h in second['history']]
    assert losses[-1] < 0.9 * losses[0], losses
    assert second['model_config']['input_layout'] == 'coco_17' and second['model_config']['frame_step'] == 2


def test_run_in_the_wild_evaluates_a_pstmo_file(data_root, tmp_path):
    """`run_in_the_wild.py -k detectron_pt_coco -f 243 -tds 2 --reload 1 --previous_dir
    PSTMOS_no_refine_48_5137_in_the_wild.pth` with a P-STMO file of the official layout (small)."""
    from conftest import load_fixture
    path = tmp_path / 'PSTMOS_no_refine_48_5137_in_the_wild.pth'
    torch.save(load_fixture('pstmo_h36m_f81_l2.pt')['checkpoint'], path)
    code, out, err = run_in_the_wild(['-d', 'synthetic', '--root_path', data_root, '-a', 'Walking', '-ste', 'S9',
                                      '--nolog', '-f', 81, '-tds', 2, '--reload', 1, '--previous_dir', path,
                                      '--results-json', tmp_path / 'results.json'])
    assert code == 0, err
    assert 'model stmo' in out and 'Protocol #1' in out
    assert os.path.isfile(tmp_path / 'results.json')
