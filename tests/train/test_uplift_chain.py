"""The published Uplift-and-Upsample chain at small size, in the release's command form: pretraining
on (synthetic) converted AMASS with amass_351's recipe, then fine-tuning on Human3.6M from that
checkpoint with h36m_351_pt's, and from a Keras .h5 file."""
import json
import os
import re

import numpy as np

from helpers_data import run_inprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {'SEQUENCE_LENGTH': 9, 'SEQUENCE_STRIDE': 2, 'MASK_STRIDE': [2, 4], 'STRIDES': [3, 3],
        'PADDINGS': [[0, 0], [0, 0]], 'SPATIAL_EMBED_DIM': 8, 'TEMPORAL_EMBED_DIM': 32, 'NUM_HEADS': 2,
        'SPATIAL_TRANSFORMER_BLOCKS': 1, 'TEMPORAL_TRANSFORMER_BLOCKS': 1, 'BATCH_SIZE': 64}


def _config(tmp_path, name, **changes):
    """A release config of ours shrunk to a tiny network, written as NAME.json."""
    with open(os.path.join(ROOT, 'configs', 'uplift_release', f'{name}.json')) as handle:
        config = {**json.load(handle), **TINY, **changes}
    path = tmp_path / f'{name}.json'
    path.write_text(json.dumps(config))
    return str(path)


def _losses(stdout):
    return [float(v) for v in re.findall(r'\] lr \S+\s+train loss ([\d.]+)', stdout)]


def test_amass_pretraining_then_human36m_finetuning(tmp_path, reference_dir):
    from common.data.synthetic import ensure_synthetic
    amass = ensure_synthetic(str(tmp_path / 'amass'), 'amass')
    schedule = {'decay_rate': 0.95, 'decay_steps': 6000, 'initial_learning_rate': 2e-3, 'staircase': True}
    pretrain = ['--dataset', 'amass', '--amass_path', amass, '--test_subset', 'none',
                '--config', _config(tmp_path, 'amass_351', EPOCHS=4, SCHEDULE_PARAMS=schedule),
                '--out_dir', str(tmp_path / 'amass_351')]
    code, out, err = run_inprocess(pretrain)
    assert code == 0, err
    losses = _losses(out)
    assert len(losses) == 4 and losses[-1] < 0.6 * losses[0], losses
    assert 'SFU' in out   # evaluated on the release's validation split
    best = tmp_path / 'amass_351' / 'best.pt'
    assert best.is_file()

    data = str(tmp_path / 'data')
    finetune = ['-d', 'synthetic', '--root_path', data, '-a', 'Walking', '--train_subset', 'trainval',
                '--val_subset', 'none', '--test_subset', 'test']
    code, out, err = run_inprocess(finetune + ['--weights', str(best), '--out_dir', str(tmp_path / 'pt'),
                                               '--config', _config(tmp_path, 'h36m_351_pt', EPOCHS=3)])
    assert code == 0, err
    assert f'training starts from {best}' in out
    losses = _losses(out)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    results = json.loads((tmp_path / 'pt' / 'results.json').read_text())
    assert results['config']['model_config']['mask_stride'] == [2, 4]
    assert set(results['per_action']) == {'Walking'} and np.isfinite(results['mpjpe'])

    # the same fine-tuning from the release's Keras weights (the fixture's small network and config)
    fixture = np.load(os.path.join(reference_dir, 'models', 'uplift_upsample_small.npz'))
    keras_config = {**json.loads(str(fixture['config_json'])), 'EPOCHS': 2, 'BATCH_SIZE': 64}
    (tmp_path / 'small.json').write_text(json.dumps(keras_config))
    code, out, err = run_inprocess(finetune + ['--weights', os.path.join(reference_dir, 'models',
                                                                         'uplift_upsample_small.h5'),
                                               '--config', str(tmp_path / 'small.json'), '--out_dir',
                                               str(tmp_path / 'from_h5')])
    assert code == 0, err
    losses = _losses(out)
    assert len(losses) == 2 and losses[-1] < losses[0], losses


def test_continue_training_and_validation_on_the_other_dataset(tmp_path, reference_dir):
    """--dataset_val h36m scores an AMASS training on Human3.6M; --continue_training goes on from
    --out_dir's latest.pt."""
    import shutil
    from helpers_data import write_tiny_h36m
    amass = tmp_path / 'amass'
    amass.mkdir()
    shutil.copy(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), amass / 'CMU.npz')
    h36m = write_tiny_h36m(str(tmp_path / 'h36m'), frames=60)
    argv = ['--dataset', 'amass', '--amass_path', str(amass), '--dataset_val', 'h36m', '--val_subset', 'S9',
            '--h36m_path', h36m, '-k', 'gt', '--out_dir', str(tmp_path / 'out')]
    code, out, err = run_inprocess(argv + ['--config', _config(tmp_path, 'amass_351', EPOCHS=1)])
    assert code == 0, err
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert set(results['per_action']) == {'Walking', 'Eating'}   # the Human3.6M groups of S9
    code, out, err = run_inprocess(argv + ['--config', _config(tmp_path, 'amass_351', EPOCHS=2),
                                           '--continue_training', 'True'])
    assert code == 0, err
    assert len(_losses(out)) == 1 and '[2] lr' in out
