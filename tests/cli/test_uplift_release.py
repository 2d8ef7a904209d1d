"""Uplift-and-Upsample's release on run.py: its four JSON configs equal our presets and recipes, the
seed's eval.py command form evaluates an .h5 file, and bad release input is one line."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from common.cli.recipes import load_recipe
from common.cli.uplift_config import preset_values, read_release_config
from helpers_data import run_inprocess, write_tiny_h36m

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(ROOT, 'configs', 'uplift_release')
RECIPE_OF = {'h36m_351': 'uplift_h36m_351_train', 'h36m_351_pt': 'uplift_h36m_351_pt_train',
             'h36m_81': 'uplift_h36m_81_train', 'amass_351': 'uplift_amass_351_pretrain'}
RECIPE_FLAG = {'-e': 'epochs', '-b': 'batch_size', '-lr': 'lr', '-lrd': 'lr_decay', '--weight-decay': 'weight_decay',
               '--optimizer': 'optimizer', '--ema': 'ema'}


@pytest.mark.parametrize('name', sorted(RECIPE_OF))
def test_release_configs_equal_our_presets_and_recipes(name):
    settings = read_release_config(os.path.join(RELEASE, f'{name}.json'))
    assert settings.preset == name and settings.model_options() == {'preset': name}
    expected = {k: list(map(list, v)) if k == 'paddings' else list(v) if isinstance(v, tuple) else v
                for k, v in preset_values(name).items()}
    assert settings.model == expected
    recipe = load_recipe(RECIPE_OF[name]).flags
    for flag, dest in RECIPE_FLAG.items():
        assert settings.training[dest] == pytest.approx(recipe.get(flag)), (flag, dest)
    assert settings.training['data_augmentation'] and settings.training['test_time_augmentation']
    assert 'STEPS_PER_EPOCH' in settings.ignored and 'GPU_ID' in settings.ignored


@pytest.fixture(scope='module')
def small(reference_dir, tmp_path_factory):
    """The fixture's .h5 weights, its JSON config and a tiny Human3.6M folder (S1, S9)."""
    root = tmp_path_factory.mktemp('uplift_release')
    fixture = np.load(os.path.join(reference_dir, 'models', 'uplift_upsample_small.npz'))
    config = json.loads(str(fixture['config_json']))
    (root / 'small.json').write_text(json.dumps(config))
    return {'h5': os.path.join(reference_dir, 'models', 'uplift_upsample_small.h5'), 'config': config,
            'json': str(root / 'small.json'), 'data': write_tiny_h36m(str(root / 'data'), frames=60), 'root': root}


def test_seed_eval_command_evaluates_the_h5(small):
    out = small['root'] / 'results.json'
    code, stdout, err = run_inprocess(['--weights', small['h5'], '--config', small['json'], '--test_subset', 'S9',
                                       '--h36m_path', os.path.join(small['data'], 'data_3d_h36m.npz'),
                                       '--dataset_2d_path', os.path.join(small['data'], 'data_2d_h36m_gt.npz'),
                                       '--nolog', '--results-json', str(out)])
    assert code == 0, err
    assert 'Frame-wise evaluation:' in stdout and 'Total action-wise evaluation results:' in stdout
    assert 'ignored: BEST_CHECKPOINT_METRIC' in stdout
    # the same numbers as the model built by hand from the config, loaded and evaluated through the API
    from common.data.datasets import DataConfig, load_dataset
    from common.dist import DistInfo
    from common.eval.evaluation import EvalConfig, evaluate
    from common.keras_import import load_uplift_h5
    from models import build_model
    from models.uplift_upsample import options_from_official_config
    model = load_uplift_h5(build_model('uplift_upsample', **options_from_official_config(small['config'])), small['h5'])
    _, test, spec = load_dataset(DataConfig(dataset='h36m', root_path=small['data'], keypoints='gt',
                                            subjects_test=['S9'], test_only=True))
    results = evaluate(model, test, spec, EvalConfig(), torch.device('cpu'), DistInfo())
    saved = json.loads(out.read_text())
    assert saved['mpjpe'] == pytest.approx(results['mpjpe'], rel=1e-6)
    assert f"MPJPE: {results['frame_weighted']['mpjpe']:.3f}" in stdout
    code, frame_only, err = run_inprocess(['--weights', small['h5'], '--config', small['json'], '--test_subset', 'S9',
                                           '--h36m_path', small['data'], '--dataset_2d', os.path.join(
                                               small['data'], 'data_2d_h36m_gt.npz'), '--frame_wise', '--nolog'])
    assert code == 0, err
    assert 'Frame-wise evaluation:' in frame_only and 'Total action-wise' not in frame_only


def _error(argv):
    code, _, err = run_inprocess(argv)
    lines = [line for line in err.splitlines() if line.startswith('error')]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


def test_bad_release_input(small, tmp_path, reference_dir):
    data = ['--h36m_path', small['data'], '-k', 'gt', '--test_subset', 'S9', '--nolog']
    unknown = tmp_path / 'unknown.json'
    unknown.write_text(json.dumps({**small['config'], 'SEQUENCE_LENGHT': 27}))
    assert "unknown key 'SEQUENCE_LENGHT'" in _error(['--weights', small['h5'], '--config', str(unknown)] + data)
    longer = tmp_path / 'longer.json'
    longer.write_text(json.dumps({**small['config'], 'TEMPORAL_EMBED_DIM': 32}))
    line = _error(['--weights', small['h5'], '--config', str(longer)] + data)
    assert 'contradicts the weights' in line and 'temporal_pe: file (27, 16) vs model (27, 32)' in line
    wrong = tmp_path / 'wrong.json'
    wrong.write_text(json.dumps({**small['config'], 'USE_REFINE': True}))
    assert 'USE_REFINE true is not supported' in _error(['--config', str(wrong)] + data)
    empty = tmp_path / 'amass'
    empty.mkdir()
    assert 'holds no converted AMASS file' in _error(['--dataset', 'amass', '--amass_path', str(empty),
                                                     '--config', small['json'], '--nolog'])
    assert '--dataset amass needs --amass_path' in _error(['--dataset', 'amass', '--config', small['json']])
    sample = np.load(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), allow_pickle=True)['positions_3d']
    sample = sample.item()
    sample['01']['01_02_poses']['positions_3d'] = np.zeros((30, 24, 3))
    np.savez(empty / 'CMU.npz', positions_3d=sample)
    shutil.copy(os.path.join(reference_dir, 'formats', 'amass_sample.npz'), empty / 'SFU.npz')
    assert 'has 24 joints, expected the 17' in _error(['--dataset', 'amass', '--amass_path', str(empty),
                                                      '--config', small['json'], '--nolog'])
    assert 'not a Human3.6M subset' in _error(['--config', small['json'], '--train_subset', 'S1'] + data)
    assert 'no such file' in _error(['--weights', str(tmp_path / 'missing.h5')] + data)


def test_readme_maps_the_seed_commands():
    """The README's Uplift-and-Upsample block: the seed's eval.py and three train.py commands, with
    the same flags after run.py, each accepted by the parser."""
    from common.cli.arguments import build_parser
    text = open(os.path.join(ROOT, 'README.md')).read()
    section = text[text.index('## Uplift-and-Upsample as its release is used'):]
    block = section[section.index('```bash'):].split('```')[1]
    commands = [line.split('python run.py ', 1)[1] for line in block.splitlines() if line.startswith('python run.py')]
    seed = ['--weights ./models/h36m_351.h5 --config ./config/h36m_351.json',
            '--train_subset trainval --val_subset none --test_subset test --config ./config/h36m_351.json '
            '--out_dir ./logs/h36m_351',
            '--train_subset trainval --val_subset none --test_subset test --config ./config/h36m_351_pt.json '
            '--weights ./models/amass_351.h5 --out_dir ./logs/h36m_351_pt',
            '--dataset amass --amass_path ./data/amass --test_subset none --config ./config/amass_351.json '
            '--out_dir ./logs/amass_351']
    assert all(command in commands for command in seed)
    for command in commands:
        args = build_parser('run.py').parse_args(command.split())
        assert args.config.endswith('.json')
    assert 'S1 S5 S6 S7 S8' in section and 'MPIHDM05, SFU, MPImosh' in section


def _applied(argv):
    from common.cli.arguments import build_parser
    from common.cli.uplift_release import apply_release_flags, given_dests
    parser = build_parser('run.py')
    return apply_release_flags(parser.parse_args(argv), given_dests(parser, argv))


def test_flags_take_the_release_meaning(small, tmp_path):
    config = os.path.join(RELEASE, 'h36m_81.json')
    args = _applied(['--weights', small['h5'], '--config', config, '--gpu_id', '1', '--frame_wise'])
    assert args.evaluate == small['h5'] and not args.reload   # eval.py: evaluate the file
    assert args.subjects_test == ['S9', 'S11'] and args.gpu == [1] and args.release_summary == 'frame'
    assert args.uplift_h5_options == {'preset': 'h36m_81'} and args.ema == 0.999 and args.batch_size == 256
    args = _applied(['--weights', small['h5'], '--config', config, '--out_dir', str(tmp_path), '-b', '32',
                     '--dataset_2d_path', 'data/data_2d_h36m_gt.npz'])
    assert (args.reload, args.previous_dir, args.train) == (1, small['h5'], 1)   # train.py: start from it
    assert args.checkpoint == args.log == str(tmp_path) and args.batch_size == 32 and args.keypoints == 'gt'
    assert args.subjects_train == ['S1', 'S5', 'S6', 'S7'] and args.subjects_test == ['S8']   # release defaults
    args = _applied(['--config', config, '--train_subset', 'trainval', '--val_subset', 'none', '--test_subset',
                     'test', '-e', '5'])
    assert args.model_options == {'preset': 'h36m_81'} and args.epochs == 5 and args.lr == 4e-05
    assert args.subjects_train == ['S1', 'S5', 'S6', 'S7', 'S8'] and args.subjects_test == ['S9', 'S11']
    args = _applied(['--dataset', 'amass', '--amass_path', str(tmp_path), '--amass_frame_rate', '25',
                     '--dataset_val', 'h36m', '--val_subset', 'S9', '--h36m_path', small['data']])
    assert args.root_path == str(tmp_path) and args.reader_options == {'frame_rate': 25}
    assert args.subjects_train == ['train'] and args.validation_data.dataset == 'h36m'
    assert args.validation_data.root_path == small['data'] and args.validation_data.subjects_test == ['S9']
