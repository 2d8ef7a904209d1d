"""Context-Aware PoseFormer end to end on the embedded synthetic images: backbone -> feature
cache -> head training -> evaluation through run.py, the cache against the images, and the
checkpoint evaluated from the images alone."""
import json
import re

import numpy as np
import pytest
import torch

from helpers_data import run_inprocess, single_thread  # noqa: F401

TINY = ['--backbone', 'hrnet_tiny', '--backbone-weights', 'random', '-cs', '16', '-b', '24', '--nolog']


@pytest.fixture(scope='module')
def image_data(tmp_path_factory):
    from common.data.synthetic_images import ensure_synthetic_images
    root = tmp_path_factory.mktemp('images')
    ensure_synthetic_images(str(root / 'synthetic_images'))
    return root


@pytest.fixture(scope='module')
def trained(image_data, tmp_path_factory):
    """(stdout, results, checkpoint dir) of 2 epochs trained from the feature cache."""
    work = tmp_path_factory.mktemp('run')
    argv = ['-d', 'synthetic_images', '--root_path', image_data, *TINY, '-e', '2', '-lr', '0.003',
            '--feature-cache', work / 'cache', '-c', work / 'ck', '--results-json', work / 'results.json']
    code, out, err = run_inprocess(argv)
    assert code == 0, err
    return out, json.loads((work / 'results.json').read_text()), work


def test_trains_from_the_cache_and_prints_the_table(trained):
    out, results, work = trained
    losses = [float(v) for v in re.findall(r'train-loss ([\d.]+) mm', out)]
    assert len(losses) == 2 and losses[1] < losses[0] * 0.8   # the loss falls
    assert 'Protocol #1   (MPJPE) action-wise average' in out
    assert sorted(results['per_action']) == ['Directions', 'Sitting', 'Walking']
    # the headline number is the mean of the action means (frames: 2 subjects x 2 sub-actions x 2 cameras x 3)
    assert results['mpjpe'] == pytest.approx(np.mean([r['mpjpe'] for r in results['per_action'].values()]))
    assert all(r['frames'] == 24 for r in results['per_action'].values())
    assert results['flip_test'] is True
    meta = json.loads((work / 'cache' / 'train' / 'meta.json').read_text())
    assert meta['views'] == 2 and meta['images'] == 72 and meta['dtype'] == 'float16'
    assert (work / 'ck' / 'best.pt').is_file()


def test_checkpoint_evaluates_from_images_as_from_the_cache(trained, image_data, tmp_path):
    out, results, work = trained
    best_epoch = int(np.argmin([h['test'] for h in results['history']]))
    code, out, err = run_inprocess(['-d', 'synthetic_images', '--root_path', image_data, '--nolog',
                                    '-c', work / 'ck', '--evaluate', 'best.pt', '--results-json',
                                    tmp_path / 'eval.json'])
    assert code == 0, err
    evaluated = json.loads((tmp_path / 'eval.json').read_text())
    assert 'Protocol #2 (P-MPJPE) action-wise average' in out
    # images (float32 maps) vs the float16 cache: the same numbers to a fraction of a millimetre
    assert evaluated['mpjpe'] == pytest.approx(results['history'][best_epoch]['test'], abs=0.5)


def test_cache_gives_the_loss_of_the_images(image_data, tmp_path):
    """Training from images and from the cache: the same loss on the same batch, both views."""
    from common.data.feature_cache import CachedFeatures, build_cache, labels_identity
    from common.data.h36m_toolbox import ToolboxImages, read_labels
    from common.dist import DistInfo
    from common.eval.image_evaluation import ViewMaker
    from common.train.backbone_weights import build_backbone, weights_fingerprint
    from common.train.image_engine import HeadObjective, make_loader
    from models import build_model
    from models.context_pose import ContextPoseNetwork
    root = image_data / 'synthetic_images'
    table = read_labels(str(root / 'h36m_train.pkl'))
    torch.manual_seed(0)
    network = ContextPoseNetwork(build_backbone('hrnet_tiny', seed=3),
                                 build_model('context_pose', base_dim=8, embed_dim_ratio=16), 'hrnet_tiny')
    images = ToolboxImages(table, str(root / 'images'))

    def extract(crops, mirrored):
        batch = network.normalise(crops)
        return network.features(batch.flip(2) if mirrored else batch)
    loader, _ = make_loader(images, 16, 0, DistInfo(), shuffle=False)
    meta = build_cache(str(tmp_path), loader, extract, weights_fingerprint(network.backbone), labels_identity(table),
                       'hrnet_tiny', views=2, dtype='float32')
    cached, _ = make_loader(CachedFeatures(str(tmp_path), table, meta), 8, 0, DistInfo(), seed=5)
    from_images, _ = make_loader(images, 8, 0, DistInfo(), seed=5)
    objective = HeadObjective(network.volume_net)
    for mirrored in (False, True):
        losses = []
        for batches, is_cached in ((cached, True), (from_images, False)):
            batch = next(iter(batches))
            keypoints_2d, crop, features, target = ViewMaker(network, is_cached, 'cpu')(batch, mirrored)
            torch.manual_seed(1)   # the same drop-path draws for both
            losses.append(objective(keypoints_2d, crop, target, *features))
        torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
        assert losses[0].item() > 0.05   # an untrained head: a real loss, not zero


def test_published_checkpoint_layout_evaluates_with_eval(image_data, reference_dir, tmp_path):
    """The release's --eval on a best_epoch.bin of the published layout (the full-model fixture's
    HRNet-W32 + small head): the per-action table and the action-wise average."""
    import os
    import pickle
    fx = torch.load(os.path.join(reference_dir, 'models', 'context_pose_full_small.pt'), weights_only=True)
    (tmp_path / 'checkpoint').mkdir()
    torch.save(fx['checkpoint'], tmp_path / 'checkpoint' / 'best_epoch_hrnet_32.bin')
    root = image_data / 'synthetic_images'
    with open(root / 'h36m_validation.pkl', 'rb') as handle:
        entries = pickle.load(handle)
    few = [e for e in entries if e['subject'] == 9 and e['camera_id'] == 0 and e['subaction'] == 1][:6]
    with open(tmp_path / 'few.pkl', 'wb') as handle:
        pickle.dump(few, handle)   # 3 frames of 2 actions: the full-size backbone is slow on a CPU
    code, out, err = run_inprocess(['-d', 'synthetic_images', '--root_path', image_data, '--test-labels',
                                    tmp_path / 'few.pkl', '-c', tmp_path / 'checkpoint', '--eval', '--nolog',
                                    '--results-json', tmp_path / 'eval.json'])
    assert code == 0, err
    results = json.loads((tmp_path / 'eval.json').read_text())
    assert sorted(results['per_action']) == ['Directions', 'Walking']
    assert re.search(r'^Walking +3 ', out, re.M) and 'Protocol #1   (MPJPE) action-wise average' in out
    assert results['mpjpe'] == pytest.approx(np.mean([r['mpjpe'] for r in results['per_action'].values()]))
    assert results['config']['model_config']['image_backbone'] == 'hrnet_32'
