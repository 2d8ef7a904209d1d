"""Uplift-and-Upsample's JSON configuration files (its ``config/*.json``), read as they are.

``read_release_config(path)`` returns a :class:`ReleaseSettings`: the model's constructor keywords,
the preset they equal (``h36m_351``, ``h36m_351_pt``, ``amass_351``, ``h36m_81``; the file name
decides between presets of equal architecture), our training settings (flag destinations of
common/cli/arguments.py -> values), and the keys that have no counterpart here, reported once.
A key the release does not know, a value of the wrong kind, or a feature we do not implement is a
one-line error. Keys a file leaves out take the release's defaults (its ``UpliftUpsampleConfig``).
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from common.cli.config_files import read_json_object
from common.errors import UserError

OFFICIAL_FLIP_ORDER = [5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 10, 16, 15, 14, 13, 12, 11]

# The release's defaults for keys a file leaves out.
RELEASE_DEFAULTS = {
    'GPU_ID': 0, 'BATCH_SIZE': 256, 'ARCH': 'UpliftUpsampleTransformer', 'SHUFFLE_SEED': 0,
    'SPATIAL_EMBED_DIM': 32, 'TEMPORAL_EMBED_DIM': 348, 'MLP_RATIO': 2, 'NUM_HEADS': 8,
    'SPATIAL_TRANSFORMER_BLOCKS': 4, 'TEMPORAL_TRANSFORMER_BLOCKS': 4, 'STRIDES': [3, 3, 3],
    'PADDINGS': [[1, 1], [1, 1], [1, 1]], 'QKV_BIAS': True, 'DROP_PATH_RATE': [0.1, 0.1, 0.0],
    'DROP_RATE': 0.0, 'ATTENTION_DROP_RATE': 0.0, 'OUTPUT_BN': False, 'USE_REFINE': False,
    'REFINE_FC_SIZE': 1024, 'REFINE_DROP_RATE': 0.5, 'TOKEN_MASK_RATE': 0.0, 'LEARNABLE_MASKED_TOKEN': False,
    'NUM_KEYPOINTS': 17, 'SEQUENCE_LENGTH': 27, 'PADDING_TYPE': 'copy', 'SEQUENCE_STRIDE': 1,
    'TEST_STRIDED_EVAL': True, 'MASK_STRIDE': None, 'STRIDE_MASK_RAND_SHIFT': False,
    'FIRST_STRIDED_TOKEN_ATTENTION_LAYER': 0, 'LOSS_WEIGHT_SEQUENCE': 1.0, 'LOSS_WEIGHT_CENTER': 1.0,
    'ROOT_KEYTPOINT': 6, 'AUGM_FLIP_KEYPOINT_ORDER': OFFICIAL_FLIP_ORDER, 'AUGM_FLIP_PROB': 0.5,
    'IN_BATCH_AUGMENT': False, 'EPOCHS': 120, 'STEPS_PER_EPOCH': 6000, 'DATASET_TRAIN_3D_SUBSAMPLE_STEP': 1,
    'DATASET_VAL_3D_SUBSAMPLE_STEP': 4, 'DATASET_TEST_3D_SUBSAMPLE_STEP': 1, 'VALIDATION_INTERVAL': 1,
    'VALIDATION_EXAMPLES': -1, 'EVAL_FLIP': True, 'EVAL_DISABLE_LEARNED_UPSAMPLING': False,
    'OPTIMIZER': 'Adam', 'OPTIMIZER_PARAMS': {'amsgrad': True, 'epsilon': 1e-08},
    'SCHEDULE': 'ExponentialDecayWithSteps',
    'SCHEDULE_PARAMS': {'initial_learning_rate': 1e-3, 'decay_steps': 12000, 'decay_rate': 0.95,
                        'large_decay_steps': 60000, 'large_decay_rate': 0.5},
    'WEIGHT_DECAY': None, 'EMA_ENABLED': False, 'EMA_DECAY': None, 'CHECKPOINT_INTERVAL': 10,
    'BEST_CHECKPOINT_METRIC': 'AW-MPJPE',
}

# Values our implementation has built in: another value is refused (what it would need).
REQUIRED = {
    'ARCH': ('UpliftUpsampleTransformer', 'the only architecture of the release'),
    'OUTPUT_BN': (False, 'the output BatchNorm variant is not implemented'),
    'USE_REFINE': (False, 'the refine head variant is not implemented'),
    'TOKEN_MASK_RATE': (0.0, 'token masking is not implemented'),
    'LEARNABLE_MASKED_TOKEN': (False, 'token masking is not implemented'),
    'PADDING_TYPE': ('copy', 'windows are padded by repeating the end frame'),
    'STRIDE_MASK_RAND_SHIFT': (True, 'training always shifts the keyframe grid at random'),
    'TEST_STRIDED_EVAL': (True, 'evaluation always interpolates between the predicted frames'),
    'EVAL_DISABLE_LEARNED_UPSAMPLING': (False, 'evaluation always uses the learned upsampling'),
    'ROOT_KEYTPOINT': (6, 'the root is the pelvis'),
    'AUGM_FLIP_KEYPOINT_ORDER': (OFFICIAL_FLIP_ORDER, 'flips swap the Human3.6M left and right joints'),
    'SCHEDULE': ('ExponentialDecay', 'the learning rate decays by a factor per epoch (-lrd)'),
}

# Keys with no counterpart here, and why (printed once when a file sets them).
IGNORED = {
    'GPU_ID': 'use --gpu_id / -gpu', 'STEPS_PER_EPOCH': 'an epoch is one pass over the windows',
    'IN_BATCH_AUGMENT': 'each window is flipped with probability 0.5',
    'DATASET_VAL_3D_SUBSAMPLE_STEP': 'every frame is scored',
    'DATASET_TEST_3D_SUBSAMPLE_STEP': 'every frame is scored',
    'VALIDATION_INTERVAL': 'evaluation runs after every epoch',
    'VALIDATION_EXAMPLES': 'every evaluation stream is scored',
    'BEST_CHECKPOINT_METRIC': "best.pt keeps the best action-wise MPJPE",
    'REFINE_FC_SIZE': 'no refine head', 'REFINE_DROP_RATE': 'no refine head',
    'SCHEDULE_PARAMS.decay_steps': 'the rate decays once per epoch',
    'SCHEDULE_PARAMS.staircase': 'the rate decays once per epoch',
}

ARCHITECTURE_KEYS = ('SEQUENCE_LENGTH', 'SEQUENCE_STRIDE', 'MASK_STRIDE', 'STRIDES', 'PADDINGS', 'SPATIAL_EMBED_DIM',
                     'TEMPORAL_EMBED_DIM', 'NUM_HEADS', 'MLP_RATIO', 'SPATIAL_TRANSFORMER_BLOCKS',
                     'TEMPORAL_TRANSFORMER_BLOCKS', 'NUM_KEYPOINTS', 'QKV_BIAS',
                     'FIRST_STRIDED_TOKEN_ATTENTION_LAYER', 'DROP_RATE', 'ATTENTION_DROP_RATE', 'DROP_PATH_RATE',
                     'LOSS_WEIGHT_CENTER', 'LOSS_WEIGHT_SEQUENCE')
TRAINING_KEYS = ('BATCH_SIZE', 'EPOCHS', 'SCHEDULE_PARAMS', 'WEIGHT_DECAY', 'OPTIMIZER', 'OPTIMIZER_PARAMS',
                 'EMA_ENABLED', 'EMA_DECAY', 'AUGM_FLIP_PROB', 'EVAL_FLIP', 'SHUFFLE_SEED', 'CHECKPOINT_INTERVAL',
                 'DATASET_TRAIN_3D_SUBSAMPLE_STEP')
assert set(RELEASE_DEFAULTS) == set(REQUIRED) | {k for k in IGNORED if '.' not in k} | set(ARCHITECTURE_KEYS) \
    | set(TRAINING_KEYS)

# Constructor defaults of models/uplift_upsample.py that a preset does not list.
_FACTORY_DEFAULTS = {'num_joints': 17, 'qkv_bias': True, 'dropout': 0.0, 'attn_drop_rate': 0.0,
                     'loss_weights': [0.5, 0.5]}


@dataclass
class ReleaseSettings:
    """model -- full constructor keywords; preset -- the preset they equal (None: none does);
    training -- flag destination -> value; ignored -- keys the file sets that have no counterpart."""
    path: str
    model: Dict[str, object]
    preset: Optional[str]
    training: Dict[str, object] = field(default_factory=dict)
    ignored: List[str] = field(default_factory=list)

    def model_options(self) -> Dict[str, object]:
        """Keywords to build it: the preset and whatever differs from it."""
        if self.preset is None:
            return dict(self.model)
        preset = preset_values(self.preset)
        return {'preset': self.preset, **{k: v for k, v in self.model.items() if _plain(preset.get(k)) != _plain(v)}}


def _plain(value):
    """Tuples as lists (JSON and our presets spell sequences differently)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def preset_values(name) -> Dict[str, object]:
    from models.uplift_upsample import PRESETS
    return {**_FACTORY_DEFAULTS, **PRESETS[name]}


def matching_preset(model: Dict[str, object], stem: str = '') -> Optional[str]:
    """The preset whose values equal ``model`` (``stem`` first when it names one), else None."""
    from models.uplift_upsample import PRESETS
    names = sorted(PRESETS, key=lambda n: n != stem)
    for name in names:
        values = preset_values(name)
        if all(_plain(values.get(k)) == _plain(v) for k, v in model.items()):
            return name
    return None


def _number(config, key, kind, low, path, optional=False):
    value = config[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)) \
            or value < low:
        noun = 'an integer' if kind is int else 'a number'
        raise UserError(f"config '{path}': {key} must be {noun} >= {low}, got {json.dumps(value)}")
    return kind(value)


def _training(config, path) -> Dict[str, object]:
    schedule = config['SCHEDULE_PARAMS']
    if not isinstance(schedule, dict) or not {'initial_learning_rate', 'decay_rate'} <= set(schedule):
        raise UserError(f"config '{path}': SCHEDULE_PARAMS must hold initial_learning_rate and decay_rate")
    optimizer, params = config['OPTIMIZER'], config['OPTIMIZER_PARAMS'] or {}
    optimizers = {('AdamW', ()): 'adamw', ('Adam', ()): 'adam', ('Adam', (('amsgrad', True),)): 'adam_amsgrad'}
    plain = tuple(sorted((k, v) for k, v in params.items() if not (k == 'epsilon' and v == 1e-08)))
    if (optimizer, plain) not in optimizers:
        raise UserError(f"config '{path}': OPTIMIZER {optimizer!r} with OPTIMIZER_PARAMS {params} has no "
                        f"counterpart here (AdamW, Adam, Adam with amsgrad)")
    flip = config['AUGM_FLIP_PROB']
    if flip not in (0, 0.5):
        raise UserError(f"config '{path}': AUGM_FLIP_PROB {flip} is not supported (0 or 0.5: half the windows)")
    ema = config['EMA_DECAY'] if config['EMA_ENABLED'] else None
    if ema is not None and not 0 < ema < 1:
        raise UserError(f"config '{path}': EMA_DECAY must be in (0, 1), got {ema}")
    lr_decay = float(schedule['decay_rate'])
    if not 0 < lr_decay <= 1 or not float(schedule['initial_learning_rate']) > 0:
        raise UserError(f"config '{path}': SCHEDULE_PARAMS needs initial_learning_rate > 0 and decay_rate in (0, 1]")
    return {'batch_size': _number(config, 'BATCH_SIZE', int, 1, path),
            'epochs': _number(config, 'EPOCHS', int, 0, path),
            'lr': float(schedule['initial_learning_rate']), 'lr_decay': lr_decay,
            'weight_decay': _number(config, 'WEIGHT_DECAY', float, 0, path, optional=True) or 0.0,
            'optimizer': optimizers[(optimizer, plain)], 'ema': ema,
            'data_augmentation': flip > 0, 'test_time_augmentation': bool(config['EVAL_FLIP']),
            'seed': _number(config, 'SHUFFLE_SEED', int, 0, path),
            'checkpoint_frequency': _number(config, 'CHECKPOINT_INTERVAL', int, 0, path),
            'stride': _number(config, 'DATASET_TRAIN_3D_SUBSAMPLE_STEP', int, 1, path)}


def read_release_config(path: str) -> ReleaseSettings:
    """The settings of one of the release's JSON files (see the module docstring)."""
    if not os.path.isfile(path):
        raise UserError(f"config file '{path}' does not exist")
    given = read_json_object(path, 'config')
    unknown = sorted(set(given) - set(RELEASE_DEFAULTS))
    if unknown:
        raise UserError(f"config '{path}': unknown key {unknown[0]!r} (not a setting of Uplift-and-Upsample's "
                        f"configuration{'; also ' + ', '.join(unknown[1:]) if unknown[1:] else ''}): remove it "
                        f"or correct its spelling")
    config = {**RELEASE_DEFAULTS, **given}
    for key, (value, reason) in REQUIRED.items():
        if _plain(config[key]) != _plain(value):
            raise UserError(f"config '{path}': {key} {json.dumps(config[key])} is not supported ({reason}; "
                            f"expected {json.dumps(value)})")
    from models.uplift_upsample import options_from_official_config
    model = options_from_official_config(config)
    model = {k: _plain(v) for k, v in model.items()}
    stride = model['mask_stride']
    model['mask_stride'] = [] if stride is None else stride if isinstance(stride, list) else [stride]
    try:  # strides, paddings and keyframe spacings checked on a model of the narrowest width
        from models import build_model
        build_model('uplift_upsample', **{**model, 'temporal_dim': model['num_heads'],
                                          'spatial_dim': model['num_heads']})
    except (TypeError, ValueError) as err:
        raise UserError(f"config '{path}' describes no valid Uplift-and-Upsample model: {err}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    ignored = [k for k in given if k in IGNORED]
    ignored += [f'SCHEDULE_PARAMS.{k}' for k in ('decay_steps', 'staircase') if k in given.get('SCHEDULE_PARAMS', {})]
    return ReleaseSettings(path=path, model=model, preset=matching_preset(model, stem),
                           training=_training(config, path), ignored=ignored)


def format_release_summary(runs, action_wise=True) -> str:
    """The release's evaluation printout for each s_in: frame-wise MPJPE / NMPJPE / PAMPJPE, then
    (``action_wise``) per action and the action-wise average; then one line per s_in.

    runs -- {label: results dict of the action-wise protocol (mm)}."""
    metrics = (('MPJPE', 'mpjpe'), ('NMPJPE', 'n_mpjpe'), ('PAMPJPE', 'p_mpjpe'))
    lines, table = [], []
    for label, results in runs.items():
        if 'per_action' not in results:
            return ''
        frames = results['frame_weighted']
        lines += [f'### Evaluation{" for " + label if label else ""} on ALL FRAMES ###', 'Frame-wise evaluation:']
        lines += [f'{name}: {frames[key]:.3f}' for name, key in metrics]
        if action_wise:
            for action in sorted(results['per_action']):
                row = results['per_action'][action]
                lines.append(f'Results for "{action}": ' + ', '.join(f'{n} {row[k]:.3f}' for n, k in metrics))
            lines.append('Total action-wise evaluation results:')
            lines += [f'{name}: {results[key]:.3f}' for name, key in metrics]
        lines.append('')
        table.append(f"{(label or 'all').replace('s_in = ', ''):<12}{frames['mpjpe']:>18.1f}{results['mpjpe']:>19.1f}")
    return '\n'.join(lines + [f"{'s_in':<12}{'frame-wise MPJPE':>18}{'action-wise MPJPE':>19}"] + table)
