"""Bad inputs of the image pipeline and the release's command line: each is one 'error: ...'
line naming the file and the fix, status 2, no traceback. Also: the release's YAML read as our
flags, --eval, and keypoint datasets refusing Context-Aware PoseFormer."""
import os
import pickle

import pytest
import yaml

from common.cli.arguments import build_parser
from common.cli.command_line import checkpoint_to_evaluate
from helpers_data import run_inprocess, single_thread  # noqa: F401

TINY = ['--backbone', 'hrnet_tiny', '--backbone-weights', 'random', '-cs', '16', '-b', '24', '--nolog']


@pytest.fixture(scope='module')
def image_root(tmp_path_factory):
    from common.data.synthetic_images import ensure_synthetic_images
    return ensure_synthetic_images(str(tmp_path_factory.mktemp('images') / 'synthetic_images'))


def labels(image_root):
    with open(os.path.join(image_root, 'h36m_validation.pkl'), 'rb') as handle:
        return pickle.load(handle)


def write_labels(path, entries):
    with open(path, 'wb') as handle:
        pickle.dump(entries, handle)
    return str(path)


def assert_one_line_error(argv, expected):
    status, _, err = run_inprocess(argv)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def evaluate_as_built(image_root, tmp_path, *extra):
    """-e 0: no training, the test labels are read and evaluated."""
    return ['-d', 'h36m_toolbox', '--root_path', image_root, *TINY, '-e', '0', '-c', tmp_path / 'ck', *extra]


def test_missing_image(image_root, tmp_path):
    entries = labels(image_root)
    entries[1] = {**entries[1], 'image': 's_09_act_02_subact_01_ca_01/missing_000002.jpg'}
    bad = write_labels(tmp_path / 'h36m_validation.pkl', entries)
    assert_one_line_error(evaluate_as_built(image_root, tmp_path, '--test-labels', bad),
                          ['missing_000002.jpg', 'not found', '--image-root'])


def test_image_of_the_wrong_size(image_root, tmp_path):
    from PIL import Image
    small = tmp_path / 'small.jpg'
    Image.new('RGB', (128, 100)).save(small)
    entries = labels(image_root)
    entries[0] = {**entries[0], 'image': str(small)}   # an absolute path inside the tree's join
    bad = write_labels(tmp_path / 'h36m_validation.pkl', entries)
    assert_one_line_error(evaluate_as_built(image_root, tmp_path, '--test-labels', bad),
                          ['small.jpg', '128 x 100', '256 x 256'])


@pytest.mark.parametrize('content, words', [
    ({'table': [1, 2]}, ['holds dict', 'H36M-Toolbox']),
    ([{'keypoints': 1, 'image': 'a.jpg'}], ['another layout', 'joints_2d_gt']),
])
def test_label_file_of_another_layout(image_root, tmp_path, content, words):
    bad = write_labels(tmp_path / 'labels.pkl', content)
    assert_one_line_error(evaluate_as_built(image_root, tmp_path, '--test-labels', bad), ['labels.pkl', *words])


def test_label_file_that_runs_code_is_refused(image_root, tmp_path):
    bad = tmp_path / 'labels.pkl'
    bad.write_bytes(b'cos\nsystem\n(S"true"\ntR.')
    assert_one_line_error(evaluate_as_built(image_root, tmp_path, '--test-labels', bad), ['labels.pkl', 'os.system'])


def test_stale_feature_cache(image_root, tmp_path):
    cache = tmp_path / 'cache'
    base = ['-d', 'h36m_toolbox', '--root_path', image_root, *TINY, '-c', tmp_path / 'ck', '--feature-cache', cache,
            '-no-da', '-no-tta']   # one view: half the backbone passes
    status, out, err = run_inprocess(base + ['--cache-only'])
    assert status == 0, err
    before = (cache / 'train' / 'level_0.npy').read_bytes()
    # --seed 1: another random backbone, so other weights than the cache was built with
    assert_one_line_error(base + ['--cache-only', '--seed', '1'], [str(cache / 'test'), 'stale', 'delete it'])
    assert (cache / 'train' / 'level_0.npy').read_bytes() == before   # nothing overwritten


def test_missing_backbone_weights(image_root, tmp_path):
    assert_one_line_error(['-d', 'h36m_toolbox', '--root_path', image_root, '--backbone', 'hrnet_32', '--nolog',
                           '--backbone-weights', tmp_path / 'none.pth'],
                          ['none.pth', 'not found', '--backbone-weights'])


def test_keypoint_dataset_refuses_context_pose(tmp_path):
    assert_one_line_error(['-d', 'synthetic', '--root_path', tmp_path, '--model', 'context_pose', '-e', '0',
                           '--nolog', '-c', tmp_path / 'ck'], ['needs an image dataset', '-d synthetic_images'])


RELEASE_CONFIG = {   # the keys of the release's experiments/human36m/human36m.yaml that we read
    'title': 'human36m', 'kind': 'human36m',
    'model': {'image_shape': [192, 256], 'init_weights': False,
              'backbone': {'type': 'hrnet_32', 'init_weights': True, 'fix_weights': True,
                           'checkpoint': 'data/pretrained/coco/pose_hrnet_w32_256x192.pth'},
              'poseformer': {'embed_dim_ratio': 128, 'depth': 4}},
    'loss': {'criterion': 'MPJPE'},
    'dataset': {'kind': 'human36m', 'root': '../H36M-Toolbox/images/', 'train_labels_path': 'data/h36m_train.pkl',
                'val_labels_path': 'data/h36m_validation.pkl'},
    'train': {'n_epochs': 9999, 'batch_size': 512, 'volume_net_lr': 0.00064, 'volume_net_lr_decay': 0.99,
              'num_workers': 14},
    'val': {'batch_size': 512, 'flip_test': True},
}


def write_yaml(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_release_yaml_is_read_as_flags(tmp_path):
    config = write_yaml(tmp_path / 'human36m.yaml', RELEASE_CONFIG)
    args = build_parser().parse_args(['--config', config, '--backbone', 'hrnet_48', '-b', '64'])
    assert (args.dataset, args.backbone, args.embed_dim) == ('h36m_toolbox', 'hrnet_48', 128)
    assert args.batch_size == 64   # typed flags win
    assert (args.lr, args.lr_decay, args.weight_decay, args.epochs) == (0.00064, 0.99, 0.1, 9999)
    assert args.image_root == '../H36M-Toolbox/images/' and args.test_labels == 'data/h36m_validation.pkl'
    assert args.backbone_weights is None   # the release's own file of the chosen backbone
    assert args.test_time_augmentation is True
    args = build_parser().parse_args(['--config', config, '--eval', '--backbone', 'hrnet_48'])
    assert checkpoint_to_evaluate(args) == os.path.join('checkpoint', 'best_epoch_hrnet_48.bin')


def test_release_yaml_with_another_crop_is_one_line(tmp_path):
    tree = {**RELEASE_CONFIG, 'model': {**RELEASE_CONFIG['model'], 'image_shape': [256, 256]}}
    config = write_yaml(tmp_path / 'human36m.yaml', tree)
    assert_one_line_error(['--config', config], ['human36m.yaml', 'image_shape', '[192, 256]'])


def test_engine_options_the_image_models_lack_are_refused(tmp_path):
    assert_one_line_error(['-d', 'synthetic_images', '--root_path', tmp_path, '--ema', '0.99', '--nolog'],
                          ['--ema', 'not available for image models'])
