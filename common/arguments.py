"""Every command-line flag, declared once, and their translation into small config objects.

The spellings of the seed commands and of VideoPose3D are accepted as aliases
(``-k``, ``-arc``, ``--nepoch``, ``--root_path``, ``--MAE``, ``-tds`` ...). Flags a
user does not give stay ``None`` so that the model's own defaults apply.
"""
import argparse
import inspect
import os
from dataclasses import dataclass, field
from typing import List, Optional

from common.errors import UserError


def _int_list(text):
    try:
        return [int(v) for v in str(text).split(',') if v != '']
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _str_list(text):
    return [v for v in str(text).split(',') if v]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, no usage dump
        self.exit(2, f'error: {message} (see --help)\n')


def build_parser(script='run.py', description='', dataset_default='h36m', viz=False):
    p = _Parser(prog=script, description=description,
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('data')
    g.add_argument('-d', '--dataset', default=dataset_default, metavar='NAME',
                   help='dataset: h36m, synthetic (embedded generated data); 3DHP: mpii3d, mpii3d_univ, 3dhp')
    g.add_argument('-k', '--keypoints', default='cpn_ft_h36m_dbb', metavar='NAME',
                   help='2D source: reads data_2d_h36m_<NAME>.npz (gt, cpn_ft_h36m_dbb, ...)')
    g.add_argument('--root_path', '--root-path', '--data-dir', dest='root_path', default='data', metavar='DIR',
                   help='directory holding the dataset files (falls back to dataset/ for P-STMO layouts)')
    g.add_argument('-str', '--subjects-train', type=_str_list, default=None, metavar='LIST',
                   help='training subjects (default: the dataset\'s standard split)')
    g.add_argument('-ste', '--subjects-test', type=_str_list, default=None, metavar='LIST',
                   help='test subjects (default: the dataset\'s standard split)')
    g.add_argument('-a', '--actions', default='*', metavar='LIST',
                   help="actions to use, comma-separated prefixes ('*' = all)")
    g.add_argument('--subset', type=float, default=1.0, metavar='FRACTION',
                   help='keep this fraction of every training stream (a contiguous clip)')
    g.add_argument('--downsample', type=int, default=1, metavar='K', help='keep every K-th frame')
    g.add_argument('--virtual-cameras', type=int, default=0, metavar='K',
                   help='3D-only training (AMASS-style): ignore the 2D file and view every 3D sequence '
                        'through K random virtual cameras')

    g = p.add_argument_group('model (unset flags take the model\'s defaults)')
    g.add_argument('--model', default=None, metavar='NAME',
                   help='lifter to use (videopose, retnet, mixste, stc, stmo, aptpose, strided, uplift_upsample); '
                        'inferred from the checkpoint when evaluating, else from family flags (-arc, --MAE, --layers)')
    g.add_argument('-f', '--frames', '--number-of-frames', dest='frames', type=int, default=None, metavar='F',
                   help='frames per input window (receptive field)')
    g.add_argument('-arc', '--architecture', type=_int_list, default=None, metavar='LIST',
                   help='VideoPose3D filter widths, e.g. 3,3,3,3,3 (receptive field = product)')
    g.add_argument('-ch', '--channels', type=int, default=None, help='VideoPose3D convolution channels')
    g.add_argument('-drop', '--dropout', type=float, default=None, help='dropout probability')
    g.add_argument('--causal', action='store_true', default=None, help='causal model (past frames only)')
    g.add_argument('--dense', action='store_true', default=None, help='VideoPose3D dense convolutions')
    g.add_argument('--uncausal', action='store_true', default=None,
                   help='RetNet: non-causal retention (absent: causal, as the release\'s parser)')
    g.add_argument('--joint-related', action='store_true', default=None,
                   help='RetNet: per-joint decay rates (absent: one rate, as the release\'s parser)')
    g.add_argument('--chunk-size', type=int, default=None, help='RetNet: chunk of the decay mask (243, 81, 27, 9)')
    g.add_argument('--gamma-divider', type=float, default=None, help='RetNet: decay rate divider (8)')
    g.add_argument('--trainable', action='store_true', default=None, help='RetNet: learn the decay rates')
    g.add_argument('--train-mode', choices=['parallel', 'chunkwise'], default=None, help='RetNet training form')
    g.add_argument('-cs', '--embed-dim', type=int, default=None, help='transformer width (RetNet/MixSTE/STC)')
    g.add_argument('-dep', '--depth', type=int, default=None, help='transformer depth (RetNet/MixSTE/STC)')
    g.add_argument('--layers', type=int, default=None, help='STMO/Strided: transformer layers (3 = P-STMO-S, 4)')
    g.add_argument('--channel', type=int, default=None, help='STMO/Strided: width (256)')
    g.add_argument('--d_hid', type=int, default=None, help='STMO/Strided: feed-forward width (512)')
    g.add_argument('-tds', '--tds', type=int, default=None, metavar='K',
                   help='temporal downsampling: centre-frame windows take every K-th frame (P-STMO)')
    g.add_argument('--MAE', action='store_true', default=None, help='STMO stage I: masked pose pretraining')
    g.add_argument('-tmr', '--temporal_mask_rate', type=float, default=None, help='stage I: masked frame rate')
    g.add_argument('-smn', '--spatial_mask_num', type=int, default=None, help='stage I: masked joints per frame')
    g.add_argument('--MAE_reload', type=int, default=0, help='1: initialise the encoder from the stage I file '
                                                              'given by --previous_dir')
    g.add_argument('--preset', default=None, help='Uplift-and-Upsample configuration (h36m_351, h36m_81, ...)')
    g.add_argument('--forced_mask_stride', '--mask-stride', dest='mask_stride', type=int, default=None,
                   help='Uplift-and-Upsample: evaluate with this keyframe spacing s_in only')
    g.add_argument('--refine', action='store_true', help='use the refine module (P-STMO / Strided). Evaluating: '
                   'apply the module of --previous_refine_name; training: train the lifter (e.g. loaded with '
                   '--reload 1 --previous_dir) and a refine module together on the refined centre frame. It uses '
                   'the ground-truth root depth and the camera intrinsics, as the published protocol')
    g.add_argument('--refine_reload', type=int, nargs='?', const=1, default=0,
                   help='1: load the refine module weights from --previous_refine_name')
    g.add_argument('--previous_refine_name', default=None, metavar='FILE', help='refine module checkpoint')
    g.add_argument('--lr_refine', type=float, default=None,
                   help='initial learning rate of the refine module while training (default: --lr, as the '
                        'released scripts, which define this flag but never read it)')

    g = p.add_argument_group('training')
    g.add_argument('--train', type=int, default=None, help='P-STMO spelling: 1 = train (the default), 0 = evaluate')
    g.add_argument('-e', '--epochs', '--nepoch', dest='epochs', type=int, default=None, help='training epochs')
    g.add_argument('-b', '--batch-size', '--batch_size', dest='batch_size', type=int, default=None,
                   help='windows per optimisation step')
    g.add_argument('-lr', '--lr', '--learning-rate', dest='lr', type=float, default=None, help='learning rate')
    g.add_argument('-lrd', '--lr-decay', '--lr_decay', dest='lr_decay', type=float, default=None,
                   help='learning rate factor per epoch')
    g.add_argument('--weight-decay', type=float, default=None, help='optimizer weight decay')
    g.add_argument('--optimizer', choices=['adamw', 'adam', 'adam_amsgrad'], default=None,
                   help="optimizer (default: the model's, else AdamW)")
    g.add_argument('--warmup', type=int, default=0, metavar='EPOCHS', help='linear learning-rate warm-up')
    g.add_argument('--clip-grad', type=float, default=None, metavar='NORM', help='clip gradients to this norm')
    g.add_argument('-s', '--stride', type=int, default=None,
                   help='window spacing: seq2seq window starts (default F), centre frames (default 1)')
    g.add_argument('--random-shift', action='store_true', help='shift seq2seq windows randomly every epoch')
    g.add_argument('-no-da', '--no-data-augmentation', dest='data_augmentation', action='store_false',
                   help='disable train-time flip augmentation')
    g.add_argument('--seed', type=int, default=0, help='random seed (CPU training is bitwise reproducible)')
    g.add_argument('--deterministic', action='store_true', help='deterministic GPU algorithms (slower)')
    g.add_argument('-gpu', '--gpu', type=_int_list, default=None, metavar='IDS',
                   help='GPU ids; several = DataParallel in one process (for many GPUs prefer torchrun)')
    g.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    g.add_argument('--amp', action='store_true', help='bf16 autocast')
    g.add_argument('--ema', type=float, default=None, metavar='DECAY', help='keep an EMA of the weights (0.999)')
    g.add_argument('--compile', action='store_true', help='torch.compile the training step')
    g.add_argument('--accumulate', type=int, default=1, metavar='N', help='gradient accumulation steps')
    g.add_argument('--max-steps-per-epoch', type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument('--ddp-timeout', type=float, default=300.0, metavar='SECONDS',
                   help='torchrun: a collective waiting longer than this fails (a rank died or hangs)')

    g = p.add_argument_group('checkpoints, evaluation and logs')
    g.add_argument('-c', '--checkpoint', default='checkpoint', metavar='DIR', help='checkpoint directory')
    g.add_argument('--evaluate', default=None, metavar='FILE',
                   help='evaluate this checkpoint (a name inside -c DIR, or a path); ours or an official file')
    g.add_argument('--reload', type=int, nargs='?', const=1, default=0,
                   help='P-STMO spelling: 1 = load --previous_dir (evaluate it, or with --train 1 fine-tune it)')
    g.add_argument('--previous_dir', default=None, metavar='PATH', help='P-STMO / Strided checkpoint file or folder')
    g.add_argument('-r', '--resume', default=None, metavar='FILE',
                   help='continue training from this checkpoint (a path, or a name inside -c DIR)')
    g.add_argument('--checkpoint-frequency', type=int, default=0, metavar='N', help='also keep epoch_N.pt every N epochs')
    g.add_argument('--checkpoint-steps', type=int, default=0, metavar='N', help='also update latest.pt every N steps')
    g.add_argument('--trust-checkpoint', action='store_true',
                   help='allow checkpoints that need full unpickling (can run code: trusted files only)')
    g.add_argument('-no-tta', '--no-test-time-augmentation', dest='test_time_augmentation', action='store_false',
                   help='disable test-time flip averaging')
    g.add_argument('--output-unit', choices=['m', 'mm'], default=None,
                   help="unit of the model's 3D outputs (default: our checkpoint's record; P-STMO / APTPose "
                        "on MPI-INF-3DHP files (-d 3dhp): mm, as those releases train and publish; else m)")
    g.add_argument('--eval-zero-root', choices=['auto', 'yes', 'no'], default='auto',
                   help="zero the predicted root before scoring (auto: the model's paper convention)")
    g.add_argument('-l', '--log', default=None, metavar='DIR', help='log directory (default log/<dataset>_<model>)')
    g.add_argument('--nolog', action='store_true', help='no log directory (no tensorboard, log file)')
    g.add_argument('--results-json', default=None, metavar='FILE', help='also write the results JSON here')
    g.add_argument('--export-training-curves', action='store_true', help='save training_curves.png')
    if viz:
        add_viz_arguments(p)
    return p


def add_viz_arguments(p):
    g = p.add_argument_group('visualisation')
    g.add_argument('--viz-subject', default=None, help='subject (S9), 3DHP sequence (TS1), or the video of --viz-custom')
    g.add_argument('--viz-action', default=None, help="action to render, e.g. 'Photo 1'")
    g.add_argument('--viz-camera', type=int, default=0, help='camera index')
    g.add_argument('--viz-video', default=None, metavar='FILE', help='video to draw the 2D input over')
    g.add_argument('--viz-skip', type=int, default=0, help='skip the first N frames of the video')
    g.add_argument('--viz-output', default=None, metavar='FILE',
                   help='output: .gif, .mp4, .png (a grid of a few frames), or a name without extension for '
                        'both NAME.gif and NAME.mp4')
    g.add_argument('--viz-export', default=None, metavar='FILE', help='save the predicted 3D poses as .npy')
    g.add_argument('--viz-bitrate', type=int, default=3000, help='MP4 bitrate (kbit/s)')
    g.add_argument('--viz-no-ground-truth', action='store_true', help='do not draw the ground truth')
    g.add_argument('--viz-limit', type=int, default=-1, help='render only the first N frames')
    g.add_argument('--viz-downsample', type=int, default=1, help='render every K-th frame')
    g.add_argument('--viz-size', type=int, default=5, help='panel size (inches)')
    g.add_argument('--viz-predictions', default=None, metavar='FILE',
                   help='render saved predictions (.npy from --viz-export, or a .npz) without a model')
    g.add_argument('--viz-custom', default=None, metavar='FILE', help='a custom 2D keypoint file (VideoPose3D format)')


# ----------------------------------------------------------------------------- translation

MODEL_FLAGS = {  # canonical model keyword -> parsed attribute
    'num_frame': 'frames', 'filter_widths': 'architecture', 'channels': 'channels', 'dropout': 'dropout',
    'dense': 'dense', 'joint_related': 'joint_related', 'chunk_size': 'chunk_size',
    'gamma_divider': 'gamma_divider', 'trainable': 'trainable', 'train_mode': 'train_mode',
    'embed_dim': 'embed_dim', 'depth': 'depth', 'layers': 'layers', 'channel': 'channel', 'd_hid': 'd_hid',
    'temporal_mask_rate': 'temporal_mask_rate', 'spatial_mask_num': 'spatial_mask_num', 'pretrain': 'MAE',
    'preset': 'preset',
}


# What a release's own parser builds when its on/off switches are absent, for models whose
# hyper-parameters come from the command line: PoseRetNet's `--model retnet` alone is causal and
# without per-joint decay (the published commands pass --joint-related --uncausal).
RELEASE_SWITCH_DEFAULTS = {'retnet': {'joint_related': False, 'causal': True}}


def explicit_model_kwargs(args) -> dict:
    """Model keywords the user set on the command line (canonical names)."""
    kwargs = {key: getattr(args, attr) for key, attr in MODEL_FLAGS.items() if getattr(args, attr) is not None}
    if args.causal:
        kwargs['causal'] = True
    elif args.uncausal:
        kwargs['causal'] = False
    return kwargs


def accepted_kwargs(factory, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``factory``'s signature names."""
    params = inspect.signature(factory).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def infer_model_name(args) -> str:
    """The model family a published training command means when it names none."""
    if args.model:
        return args.model
    if args.architecture:
        return 'videopose'
    if args.MAE or args.layers is not None or args.tds is not None or args.MAE_reload \
            or args.temporal_mask_rate is not None or args.refine:
        return 'stmo'
    if args.chunk_size is not None or args.joint_related or args.uncausal:
        return 'retnet'
    return 'videopose'


def main_model_file(previous_dir) -> str:
    """--previous_dir names a file, or a folder of Strided Transformer files whose first '*.pth'
    starting with 'n' (no_refine_*) is the main model."""
    if not os.path.isdir(previous_dir):
        return previous_dir
    names = sorted(n for n in os.listdir(previous_dir) if n.endswith('.pth') and n.startswith('n'))
    if not names:
        raise UserError(f"no main-model file (no_refine_*.pth) in '{previous_dir}'")
    return os.path.join(previous_dir, names[0])


def in_checkpoint_dir(path, directory) -> str:
    """``path`` as given when it exists, else inside the checkpoint directory ``directory``
    (VideoPose3D and PoseRetNet name --evaluate / --resume files relative to -c DIR)."""
    inside = os.path.join(directory, path)
    return inside if not os.path.exists(path) and os.path.exists(inside) else path


def checkpoint_to_resume(args) -> Optional[str]:
    """The training checkpoint --resume FILE continues from (as given, or inside -c DIR)."""
    return in_checkpoint_dir(args.resume, args.checkpoint) if args.resume else None


def checkpoint_to_evaluate(args) -> Optional[str]:
    """The file an evaluation reads: -c DIR --evaluate FILE, or --reload 1 --previous_dir FILE
    without --train 1 (P-STMO)."""
    if args.evaluate:
        return in_checkpoint_dir(args.evaluate, args.checkpoint)
    if args.reload and args.previous_dir and args.train != 1:
        return main_model_file(args.previous_dir)
    return None


def checkpoint_to_finetune(args) -> Optional[str]:
    """The file whose model and weights training starts from: --reload 1 --previous_dir FILE
    with --train 1 (the released scripts' fine-tuning, e.g. before adding the refine module)."""
    if args.reload and args.previous_dir and args.train == 1 and not args.MAE_reload:
        return main_model_file(args.previous_dir)
    return None


def check_conflicts(args):
    if args.resume and (args.evaluate or (args.reload and args.train != 1)):
        raise UserError('--resume continues training; it cannot be combined with --evaluate / --reload')
    if args.evaluate and args.train == 1:
        raise UserError('--evaluate and --train 1 contradict each other')
    if args.MAE_reload and not args.previous_dir:
        raise UserError('--MAE_reload 1 needs --previous_dir <stage I checkpoint>')
    if args.causal and args.uncausal:
        raise UserError('--causal and --uncausal contradict each other')
