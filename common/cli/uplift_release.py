"""Uplift-and-Upsample's release flags on run.py, with the meaning its train.py and eval.py give them.

``apply_release_flags(args, given)`` turns them into our flags on the parsed namespace, before
anything reads it (``given``: the destinations typed on the command line, which keep their values):

* ``--config FILE.json`` -- the release's configuration (common/cli/uplift_config.py): the model,
  and batch size, epochs, learning rate and decay, weight decay, optimiser, EMA, flips, seed;
* ``--weights FILE`` -- evaluate it (eval.py), or start training from it (train.py: when a training
  flag is given: --train_subset, --val_subset, --out_dir, --continue_training, --dataset_val,
  --dataset amass); an ``.h5`` file is built from the --config, our ``.pt`` files must agree with it;
* ``--train_subset`` / ``--val_subset`` / ``--test_subset`` -- the release's subsets (Human3.6M
  subjects, or AMASS splits); training evaluates after every epoch on the validation subset, else
  on the test subset; ``none`` turns one off;
* ``--dataset h36m|amass`` (``-d``), ``--dataset_val``, ``--h36m_path FILE``, ``--dataset_2d_path FILE``,
  ``--amass_path DIR``, ``--amass_frame_rate R``, ``--out_dir DIR`` (checkpoints and logs),
  ``--continue_training`` (resume from DIR/latest.pt), ``--gpu_id``, ``--action_wise`` / ``--frame_wise``.
"""
import os
import re

from common.cli.command_line import accepted_kwargs, explicit_model_kwargs
from common.cli.uplift_config import read_release_config
from common.data.records import DataConfig
from common.errors import UserError

# The release's Human3.6M subsets (common/dataset/h36m_splits.py there).
H36M_SUBSETS = {'trainval': ['S1', 'S5', 'S6', 'S7', 'S8'], 'train': ['S1', 'S5', 'S6', 'S7'], 'val': ['S8'],
                'test': ['S9', 'S11'], 'S8': ['S8'], 'S9': ['S9'], 'S11': ['S11']}
RELEASE_FLAGS = ('config', 'weights', 'train_subset', 'val_subset', 'test_subset', 'dataset_val', 'h36m_path',
                 'dataset_2d_path', 'amass_path', 'amass_frame_rate', 'out_dir', 'continue_training', 'gpu_id',
                 'action_wise')
AMASS_NAMES = ('amass', 'synthetic_amass')
OFF = ('none', 'None', '')


def given_dests(parser, argv) -> set:
    """Destinations of the flags typed in ``argv`` (any spelling, ``--flag=value`` too)."""
    actions = parser._option_string_actions
    return {actions[t.split('=', 1)[0]].dest for t in map(str, argv) if t.split('=', 1)[0] in actions}


YAML_SUFFIXES = ('.yaml', '.yml')


def uses_release_flags(args) -> bool:
    dataset = str(getattr(args, 'dataset', ''))
    if str(getattr(args, 'config', None) or '').lower().endswith(YAML_SUFFIXES):  # another release's file
        return any(getattr(args, name, None) is not None for name in RELEASE_FLAGS if name != 'config')
    return any(getattr(args, name, None) is not None for name in RELEASE_FLAGS) or \
        dataset in AMASS_NAMES or dataset.endswith('.npz')


def _truthy(text) -> bool:
    return text not in (False, 'False', 'false', 'f', 'n', '0')


def _subset(name, kind, flag):
    if name is None or name in OFF:
        return None
    if kind == 'amass':
        return [name]   # a split name, a sub-dataset or patterns (common/data/amass.py checks them)
    if name not in H36M_SUBSETS:
        raise UserError(f"{flag} {name}: not a Human3.6M subset; choose one of {', '.join(H36M_SUBSETS)}, or none")
    return list(H36M_SUBSETS[name])


def _h36m_folder(args, given):
    """The folder of the Human3.6M files named by --h36m_path / --dataset_2d_path (our readers take
    data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz from one folder)."""
    folder = None
    if args.h36m_path:
        path = args.h36m_path
        if os.path.isdir(path):
            folder = path
        elif os.path.basename(path) != 'data_3d_h36m.npz':
            raise UserError(f"--h36m_path {path}: expected a file named data_3d_h36m.npz (or its folder)")
        else:
            folder = os.path.dirname(path) or '.'
    if args.dataset_2d_path:
        path = args.dataset_2d_path
        match = re.fullmatch(r'data_2d_h36m_(.+)\.npz', os.path.basename(path))
        if not match:
            raise UserError(f"--dataset_2d_path {path}: expected a file named data_2d_h36m_<NAME>.npz "
                            f"(e.g. data_2d_h36m_cpn_ft_h36m_dbb.npz)")
        folder_2d = os.path.dirname(path) or '.'
        if folder is not None and os.path.abspath(folder_2d) != os.path.abspath(folder):
            raise UserError(f'--dataset_2d_path {path} is not in the folder of --h36m_path {args.h36m_path}: '
                            f'put the 2D and 3D files in one folder')
        folder = folder_2d
        if 'keypoints' not in given:
            args.keypoints = match.group(1)
    return folder


def _describe(model) -> dict:
    return {'num_frame': model.num_frame, 'sequence_stride': model.sequence_stride,
            'mask_stride': list(model.mask_stride), 'num_joints': model.num_joints,
            'spatial_dim': model.spatial_pe.shape[1], 'temporal_dim': model.temporal_pe.shape[1],
            'spatial_depth': len(model.spatial_blocks), 'temporal_depth': len(model.temporal_blocks),
            'num_heads': model.temporal_blocks[0].attn.num_heads,
            'strides': [b.stride for b in model.strided_blocks],
            'paddings': [list(b.padding) for b in model.strided_blocks],
            'masked_attention_layers': model.masked_attention_layers}


def check_config_against_checkpoint(settings, path, trust=False, typed=None):
    """One-line error when our checkpoint ``path`` holds another network than the --config describes
    (with the model flags ``typed`` on the command line over it)."""
    from common import compat
    from models import build_model, get_entry
    name, record = compat.model_spec_from_checkpoint(compat.read_model_file(path, trust))
    if get_entry(name).name != 'uplift_upsample':
        raise UserError(f"--config '{settings.path}' is an Uplift-and-Upsample configuration, but '{path}' "
                        f"holds {get_entry(name).name}")
    held = _describe(build_model(name, **record))
    wanted = _describe(build_model('uplift_upsample', **{**settings.model_options(), **(typed or {})}))
    differ = [k for k in held if held[k] != wanted[k]]
    if differ:
        raise UserError(f"--config '{settings.path}' contradicts the weights '{path}': " + '; '.join(
            f'{k} {wanted[k]} in the config, {held[k]} in the weights' for k in differ[:3]))


def _evaluation_data(args, kind, subjects, h36m_folder):
    """DataConfig of --dataset_val's streams (another dataset than the training one); the synthetic
    stand-ins pair with each other."""
    synthetic = args.dataset in ('synthetic', 'synthetic_amass')
    if kind == 'h36m':
        name, root = ('synthetic', args.root_path) if synthetic else ('h36m', h36m_folder or 'data')
    else:
        name, root = ('synthetic_amass', args.root_path) if synthetic else ('amass', args.amass_path)
        if not root:
            raise UserError('--dataset_val amass needs --amass_path DIR')
    return DataConfig(dataset=name, root_path=root, keypoints=args.keypoints, subjects_test=subjects,
                      seed=args.seed, test_only=True, reader_options=dict(getattr(args, 'reader_options', {})))


def apply_release_flags(args, given: set):
    """Rewrite the namespace of a command that uses the release's flags (see the module docstring)."""
    if not uses_release_flags(args):
        return args
    settings = None
    config = args.config if args.config and not args.config.lower().endswith(YAML_SUFFIXES) else None
    if config:  # a YAML file (Context-Aware PoseFormer) was read as flags before parsing
        if not config.lower().endswith('.json'):
            raise UserError(f'--config {config}: expected an Uplift-and-Upsample .json configuration '
                            f'(or a Context-Aware PoseFormer .yaml)')
        settings = read_release_config(config)
        if settings.ignored:
            print(f"INFO: {os.path.basename(args.config)}: no counterpart here, ignored: {', '.join(settings.ignored)}")
    if str(args.dataset).endswith('.npz'):   # eval.py's --dataset is the 3D file
        args.h36m_path, args.dataset = args.h36m_path or args.dataset, 'h36m'
    kind = 'amass' if args.dataset in AMASS_NAMES else 'h36m'
    h36m_folder = _h36m_folder(args, given)
    if args.dataset == 'amass':
        if not args.amass_path and 'root_path' not in given:
            raise UserError('--dataset amass needs --amass_path DIR, the folder of the converted [DATASET].npz files')
        args.root_path = args.amass_path or args.root_path
    elif kind == 'h36m' and h36m_folder and 'root_path' not in given:
        args.root_path = h36m_folder
    if kind == 'amass' or args.dataset_val == 'amass':
        args.reader_options = {'frame_rate': args.amass_frame_rate or 50}
    if args.dataset_val not in (None, 'h36m', 'amass'):
        raise UserError(f'--dataset_val {args.dataset_val}: choose h36m or amass')

    trains = any(getattr(args, n) is not None for n in ('train_subset', 'val_subset', 'out_dir', 'dataset_val')) \
        or (args.continue_training is not None and _truthy(args.continue_training)) or kind == 'amass' \
        or args.train == 1 or not args.weights
    if not trains:
        if 'subjects_test' not in given:
            args.subjects_test = _subset(args.test_subset or 'test', kind, '--test_subset')
    else:
        if 'subjects_train' not in given:
            args.subjects_train = _subset(args.train_subset or 'train', kind, '--train_subset')
        eval_kind = args.dataset_val or kind
        val = _subset('val' if args.val_subset is None else args.val_subset, eval_kind, '--val_subset')
        test = _subset(args.test_subset, 'h36m', '--test_subset') if eval_kind == 'h36m' else None
        if val and test:
            print(f'INFO: evaluating on the validation subset {args.val_subset or "val"} after every epoch; evaluate '
                  f'best.pt on the test subset afterwards (--weights DIR/best.pt --test_subset {args.test_subset})')
        if not (val or test):
            raise UserError('nothing to evaluate during training: give --val_subset val or --test_subset test')
        if eval_kind != kind:
            args.validation_data = _evaluation_data(args, eval_kind, val or test, h36m_folder)
            args.subjects_test = []   # the training dataset's own evaluation streams are not read
        elif 'subjects_test' not in given:
            args.subjects_test = val or test

    if settings is not None:
        args.model = args.model or 'uplift_upsample'
        for dest, value in settings.training.items():
            if dest not in given:
                setattr(args, dest, value)
    if args.weights:
        if not os.path.isfile(args.weights):
            raise UserError(f'--weights {args.weights}: no such file')
        if trains:
            args.reload, args.previous_dir, args.train = 1, args.weights, 1
        elif args.evaluate:
            raise UserError('--weights and --evaluate both name a file to evaluate: give one')
        else:
            args.evaluate = args.weights
        if settings is not None:  # the model flags typed over the config's model
            from models import get_entry
            typed = accepted_kwargs(get_entry('uplift_upsample').factory, explicit_model_kwargs(args))
            if args.weights.endswith('.h5'):
                args.uplift_h5_options = {**settings.model_options(), **typed}
            else:
                check_config_against_checkpoint(settings, args.weights, args.trust_checkpoint, typed)
    elif settings is not None:
        args.model_options = settings.model_options()

    if args.out_dir:
        if 'checkpoint' not in given:
            args.checkpoint = args.out_dir
        if 'log' not in given and not args.nolog:
            args.log = args.out_dir
    if args.continue_training is not None and _truthy(args.continue_training) and 'resume' not in given:
        latest = os.path.join(args.checkpoint, 'latest.pt')
        if not os.path.isfile(latest):
            raise UserError(f'--continue_training: no checkpoint to continue from in {args.checkpoint} (latest.pt)')
        args.resume = latest
    if args.gpu_id is not None and 'gpu' not in given:
        if not str(args.gpu_id).isdigit():
            raise UserError(f'--gpu_id {args.gpu_id}: expected a GPU number')
        args.gpu = [int(args.gpu_id)]
    args.release_summary = 'frame' if args.action_wise is False else 'action'
    return args
