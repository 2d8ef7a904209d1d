"""Context-Aware PoseFormer's YAML configuration (``experiments/human36m/human36m.yaml``) read
as our flags, so that ``--config FILE.yaml`` means what the release's ``--config`` means.

The file becomes command-line tokens placed before the typed ones (typed flags win):

=================================================  =========================================
release key                                        our flag
=================================================  =========================================
model.backbone.type                                --backbone
model.backbone.checkpoint (if not the release's    --backbone-weights
default file of that backbone)
model.poseformer.embed_dim_ratio                   -cs (the head's token width)
train.batch_size / n_epochs                        -b (256 with CPN, as train.py) / -e
train.volume_net_lr / volume_net_lr_decay          -lr / -lrd (and --weight-decay 0.1, train.py's)
train.num_workers                                  --workers
val.flip_test (false)                              -no-tta
dataset.root / train_labels_path / val_labels_path --image-root / --train-labels / --test-labels
=================================================  =========================================

Keys the release reads but that have one possible value here are checked instead:
``model.image_shape`` must be [192, 256] (the release hard-codes that crop),
``model.backbone.fix_weights`` true (the backbone is frozen), ``loss.criterion`` MPJPE.
``model.poseformer.depth`` is never read by the release (the head has one block per level).
"""
from typing import List, Optional

from common.errors import UserError

RELEASE_WEIGHT_FILES = {'hrnet_32': 'pose_hrnet_w32_256x192.pth', 'hrnet_48': 'pose_hrnet_w48_256x192.pth',
                        'cpn': 'CPN50_256x192.pth.tar'}


def _get(tree, dotted, default=None):
    node = tree
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def read_yaml(path):
    import yaml
    try:
        with open(path) as handle:
            tree = yaml.safe_load(handle)
    except FileNotFoundError:
        raise UserError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read config file '{path}': {getattr(err, 'strerror', None) or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' at line {mark.line + 1}' if mark is not None else ''
        raise UserError(f"config file '{path}' is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(tree, dict) or 'model' not in tree or 'train' not in tree:
        raise UserError(f"config file '{path}' is not a Context-Aware PoseFormer configuration (no model / train "
                        f"sections; see experiments/human36m/human36m.yaml of the release)")
    return tree


def _check(path, tree):
    shape = _get(tree, 'model.image_shape', [192, 256])
    if list(shape) != [192, 256]:
        raise UserError(f"config file '{path}': model.image_shape {shape} is not supported: the release hard-codes "
                        f"the 192 x 256 crop (set [192, 256])")
    if _get(tree, 'model.backbone.fix_weights', True) is not True:
        raise UserError(f"config file '{path}': model.backbone.fix_weights false is not supported (the backbone is "
                        f"frozen, as in the published training); set it to true")
    criterion = _get(tree, 'loss.criterion', 'MPJPE')
    if criterion != 'MPJPE':
        raise UserError(f"config file '{path}': loss.criterion {criterion} is not supported (MPJPE, as published)")
    if _get(tree, 'dataset.kind', 'human36m') != 'human36m':
        raise UserError(f"config file '{path}': dataset.kind {_get(tree, 'dataset.kind')} is not supported "
                        f"(human36m)")


def typed_backbone(typed) -> Optional[str]:
    """The value of the last --backbone on the command line, if any."""
    found = None
    for i, token in enumerate(typed):
        if token == '--backbone' and i + 1 < len(typed):
            found = typed[i + 1]
        elif token.startswith('--backbone='):
            found = token.split('=', 1)[1]
    return found


def yaml_config_argv(path, typed=()) -> List[str]:
    """The flags a release YAML file stands for (see the module docstring); ``typed``: the
    command line (train.py sets batch 256 for --backbone cpn whatever the file says)."""
    tree = read_yaml(path)
    _check(path, tree)
    tokens = ['-d', 'h36m_toolbox', '--weight-decay', '0.1']
    backbone = _get(tree, 'model.backbone.type')
    if backbone:
        tokens += ['--backbone', str(backbone)]
    weights = _get(tree, 'model.backbone.checkpoint')
    if weights and _get(tree, 'model.backbone.init_weights', True) and \
            str(weights).rsplit('/', 1)[-1] != RELEASE_WEIGHT_FILES.get(backbone):
        tokens += ['--backbone-weights', str(weights)]
    for key, flag in (('model.poseformer.embed_dim_ratio', '-cs'), ('train.batch_size', '-b'),
                      ('train.n_epochs', '-e'), ('train.volume_net_lr', '-lr'),
                      ('train.volume_net_lr_decay', '-lrd'), ('train.num_workers', '--workers'),
                      ('dataset.root', '--image-root'), ('dataset.train_labels_path', '--train-labels'),
                      ('dataset.val_labels_path', '--test-labels')):
        value = _get(tree, key)
        if value not in (None, ''):
            tokens += [flag, str(value)]
    if _get(tree, 'val.flip_test', True) is False:
        tokens.append('-no-tta')
    if (typed_backbone(typed) or backbone) == 'cpn':
        tokens += ['-b', '256']
    return tokens
