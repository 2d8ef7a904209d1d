"""Every command-line flag, declared once, and their translation into small config objects.

The spellings of the seed commands and of VideoPose3D are accepted as aliases
(``-k``, ``-arc``, ``--nepoch``, ``--root_path``, ``--MAE``, ``-tds`` ...). Defaults are read
from the config dataclasses that use them (TrainConfig, DataConfig, WindowConfig, EvalConfig,
the DDP timeout of common/dist.py), so ``--help`` shows the values a run really uses. Model
flags a user does not give stay ``None`` so that the model's own defaults apply.

Every number is checked when the command line is parsed: a value out of range is one line on
stderr and exit status 2, as are unknown flags (with the closest known one suggested) and
abbreviations (``--epoch`` is not ``--epochs``). ``--recipe NAME`` reads the flags of a
published recipe from configs/ (common/cli/recipes.py); flags typed after it override them.
"""
import argparse
import difflib
import os
import re
import sys
from typing import Optional

from common.data.datasets import DataConfig
from common.dist import DEFAULT_TIMEOUT_S
from common.errors import UserError
from common.train.engine import TrainConfig
from common.eval.evaluation import EvalConfig
from common.data.generators import WindowConfig
from models import lifter_names
from common.cli.config_files import expand_config, raw_flag_value
from common.cli.flag_types import (COUNT, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, SWITCH_01, directory,
                                   int_list, model_name, number, str_list)
from common.cli.recipes import RecipeError, format_recipe_list, load_recipe
from common.cli.inference_flags import add_inference_arguments
from common.cli.release_arguments import add_image_model_arguments, add_uplift_release_arguments
from common.cli.wild_arguments import add_wild_arguments

TRAIN, DATA, WINDOWS, EVALUATION = TrainConfig(), DataConfig(), WindowConfig(), EvalConfig()
MODEL_DEFAULT = "default: the model's"


# ----------------------------------------------------------------------------- the parser

# '-1e-3', '-.5', '-2.', '-inf' are values, not flags (argparse's own pattern knows only -1 and -1.5)
NEGATIVE_NUMBER = re.compile(r'^-(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|infinity|nan)$', re.IGNORECASE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows '(default: X)' where a flag has a real default and its help does not already say
    it in words; never for unset (None) values or on/off switches."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=36)

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if default is None or default is argparse.SUPPRESS or isinstance(default, bool) \
                or action.nargs == 0 or 'default' in text:
            return text
        return f'{text} (default: %(default)s)'


class _Parser(argparse.ArgumentParser):
    """One-line errors (exit status 2), no abbreviations, negative numbers in any notation as
    values, the closest flag suggested for an unknown one, and --recipe expansion."""

    def __init__(self, *args, trains=True, **kwargs):
        super().__init__(*args, allow_abbrev=False, formatter_class=HelpFormatter, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER
        self.trains = trains

    def error(self, message):  # one line, exit code 2, no usage dump
        self.exit(2, f"error: {' '.join(str(message).split())} (see --help)\n")

    def _get_option_tuples(self, option_string):
        # argparse matches '-tm' to '-tmr' even with allow_abbrev=False; keep only the split of a
        # one-letter flag from its attached value ('-e5')
        return [t for t in super()._get_option_tuples(option_string)
                if len(t[1]) == 2 and t[1][1] not in self.prefix_chars]

    def closest_flag(self, text) -> Optional[str]:
        flags = [f for f in self._option_string_actions if f not in ('-h', '--help')]
        longer = sorted((f for f in flags if f.startswith(text) and len(text) > 2), key=len)
        if longer:
            return longer[0]
        close = difflib.get_close_matches(text, flags, n=1, cutoff=0.6)
        return close[0] if close else None

    def expand_recipe(self, args):
        """``args`` with the flags of its --recipe NAME in front (the typed flags then win)."""
        try:
            value = raw_flag_value(args, '--recipe')
        except ValueError as err:
            self.error(str(err))
        if value is None:
            return args
        if value == 'list':
            print(format_recipe_list(self.prog))
            self.exit(0)
        try:
            recipe = load_recipe(value)
        except RecipeError as err:
            self.error(str(err))
        if recipe.script != self.prog:
            self.error(f"recipe '{recipe.name}' is for {recipe.script}, not {self.prog}: "
                       f"run python {recipe.script} --recipe {value}")
        return recipe.argv() + list(args)

    def parse_known_args(self, args=None, namespace=None):
        args = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(self.expand_config(self.expand_recipe(args)), namespace)

    def expand_config(self, args):
        """``args`` with the flags of its --config FILE in front (common/cli/config_files.py)."""
        try:
            return expand_config(args)
        except UserError as err:
            self.error(str(err))

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            unknown = next((a for a in extras if a.startswith('-') and len(a) > 1), None)
            if unknown is None:
                self.error(f"unrecognized arguments: {' '.join(extras)}")
            flag = unknown.split('=', 1)[0]
            suggestion = self.closest_flag(flag)
            hint = f'; did you mean {suggestion}?' if suggestion else ''
            if suggestion and suggestion.startswith(flag):
                hint += ' (flags cannot be abbreviated)'
            self.error(f'unrecognized argument {flag}{hint}')
        self.announce(namespace)
        return namespace

    def announce(self, args):
        """What a parsed command means, where it is not obvious: -e 0 trains nothing."""
        if not self.trains or getattr(args, 'epochs', None) != 0 or os.environ.get('RANK', '0') != '0':
            return
        if args.evaluate or (args.reload and args.previous_dir and args.train != 1):
            return  # an evaluation: -e does not apply
        print('INFO: -e 0: no training; the model as built (or loaded with --resume / --reload / '
              '--MAE_reload) is evaluated and its results are written', flush=True)


def _examples(script, viz):
    if viz:
        pairs = [("-d synthetic -c checkpoint --evaluate best.pt --viz-subject S9 --viz-action 'Walking 1' "
                  "--viz-output output/walk.gif", ''),
                 ('--recipe retnet_h36m_cpn_243_render', 'a published rendering command')]
    elif script == 'run_3dhp.py':
        pairs = [('-d synthetic -arc 3,3 -e 10', 'train on the embedded synthetic data'),
                 ('-f 81 --reload 1 --previous_dir checkpoint/PSTMOS_no_refine_50_3203_3dhp.pth', ''),
                 ('--recipe pstmo_s_3dhp_stage1 -b 64', 'a recipe, with one of its flags changed')]
    else:
        pairs = [('-d synthetic -arc 3,3,3 -e 10', 'train on the embedded synthetic data'),
                 ('-d synthetic -arc 3,3,3 -e 0', 'evaluate the model as built, no training'),
                 ('-c checkpoint --evaluate best.pt', 'evaluate a checkpoint'),
                 ('--recipe pstmo_s_h36m_cpn_stage1 -b 64', 'a recipe, with one of its flags changed'),
                 ('--recipe cpu_videopose', 'one epoch on the CPU')]
    pairs.append(('--recipe list', 'the published recipes (configs/) and what they do'))
    width = max(len(command) for command, note in pairs if note)
    lines = [f'  python {script} {command:<{width}}  {note}'.rstrip() for command, note in pairs]
    return 'examples:\n' + '\n'.join(lines)


def build_parser(script='run.py', description='', dataset_default='h36m', viz=False):
    p = _Parser(prog=script, usage='%(prog)s [--recipe NAME] [flags]  (flags by group below, examples at the end)',
                description=description, epilog=_examples(script, viz), trains=not viz)
    # groups in the order --help shows them: the flags most commands change first
    titles = ['recipes', 'training', 'data', "model (unset flags take the model's defaults)",
              'checkpoints, evaluation and logs']
    groups = {title.split(' ')[0].rstrip(','): p.add_argument_group(title) for title in titles}
    g = groups['recipes']
    g.add_argument('--recipe', default=None, metavar='NAME',
                   help='take the flags of a published recipe (a name in configs/ or a JSON file); flags given '
                        'on the command line override it; --recipe list shows them all')

    g = groups['data']
    g.add_argument('-d', '--dataset', default=dataset_default, metavar='NAME',
                   help='dataset: h36m, synthetic (embedded generated data), amass (converted AMASS, --amass_path), '
                        'synthetic_amass; 3DHP: mpii3d, mpii3d_univ, 3dhp; custom: your videos\' 2D '
                        '(data_2d_custom_<-k>.npz, with --render)')
    g.add_argument('-k', '--keypoints', default=DATA.keypoints, metavar='NAME',
                   help='2D source: reads data_2d_h36m_<NAME>.npz (gt, cpn_ft_h36m_dbb, ...)')
    g.add_argument('--root_path', '--root-path', '--data-dir', dest='root_path', type=directory,
                   default=DATA.root_path, metavar='DIR',
                   help='directory holding the dataset files (falls back to dataset/ for P-STMO layouts)')
    g.add_argument('-str', '--subjects-train', type=str_list, default=None, metavar='LIST',
                   help='training subjects (default: the dataset\'s standard split)')
    g.add_argument('-ste', '--subjects-test', type=str_list, default=None, metavar='LIST',
                   help='test subjects (default: the dataset\'s standard split)')
    g.add_argument('-a', '--actions', default='*', metavar='LIST',
                   help="actions to use, comma-separated prefixes ('*' = all)")
    g.add_argument('--subset', type=number(float, 0, 1, low_open=True), default=DATA.subset, metavar='FRACTION',
                   help='keep this fraction of every training stream (a contiguous clip)')
    g.add_argument('--downsample', type=POSITIVE_INT, default=DATA.downsample, metavar='K',
                   help='keep every K-th frame')
    g.add_argument('--virtual-cameras', type=COUNT, default=DATA.virtual_cameras, metavar='K',
                   help='3D-only training (AMASS-style): ignore the 2D file and view every 3D sequence '
                        'through K random virtual cameras (0: off)')

    g = groups['model']
    g.add_argument('--model', type=model_name, default=None, metavar='NAME',
                   help=f"lifter to use ({', '.join(lifter_names())}; context_pose needs an image dataset); "
                        'default: from the checkpoint when evaluating, else from family flags (-arc, --MAE, --layers)')
    g.add_argument('-f', '--frames', '--number-of-frames', dest='frames', type=POSITIVE_INT, default=None,
                   metavar='F', help=f'frames per input window (receptive field) ({MODEL_DEFAULT})')
    g.add_argument('-arc', '--architecture', type=int_list(1), default=None, metavar='LIST',
                   help=f'VideoPose3D filter widths, e.g. 3,3,3,3,3 (receptive field = product) ({MODEL_DEFAULT}: '
                        f'3,3,3,3,3)')
    g.add_argument('-ch', '--channels', type=POSITIVE_INT, default=None, metavar='C',
                   help=f"VideoPose3D convolution channels ({MODEL_DEFAULT}: 1024)")
    g.add_argument('-drop', '--dropout', type=FRACTION, default=None, metavar='P',
                   help=f'dropout probability, in [0, 1) ({MODEL_DEFAULT})')
    g.add_argument('--causal', action='store_true', default=None, help='causal model (past frames only)')
    g.add_argument('--dense', action='store_true', default=None, help='VideoPose3D dense convolutions')
    g.add_argument('--uncausal', action='store_true', default=None,
                   help='RetNet: non-causal retention (absent: causal, as the release\'s parser)')
    g.add_argument('--joint-related', action='store_true', default=None,
                   help='RetNet: per-joint decay rates (absent: one rate, as the release\'s parser)')
    g.add_argument('--chunk-size', type=POSITIVE_INT, default=None, metavar='N',
                   help=f'RetNet: chunk of the decay mask (243, 81, 27, 9) ({MODEL_DEFAULT})')
    g.add_argument('--gamma-divider', type=POSITIVE, default=None, metavar='X',
                   help=f"RetNet: decay rate divider ({MODEL_DEFAULT}: 8)")
    g.add_argument('--trainable', action='store_true', default=None, help='RetNet: learn the decay rates')
    g.add_argument('--train-mode', choices=['parallel', 'chunkwise'], default=None,
                   help=f"RetNet training form ({MODEL_DEFAULT}: parallel)")
    g.add_argument('-cs', '--embed-dim', type=POSITIVE_INT, default=None, metavar='C',
                   help=f'transformer width (RetNet/MixSTE/STC; Uplift-and-Upsample temporal width) ({MODEL_DEFAULT})')
    g.add_argument('-dep', '--depth', type=POSITIVE_INT, default=None, metavar='N',
                   help=f'transformer depth (RetNet/MixSTE/STC; Uplift-and-Upsample blocks) ({MODEL_DEFAULT})')
    g.add_argument('--layers', type=POSITIVE_INT, default=None, metavar='N',
                   help=f"STMO/Strided: transformer layers, 3 = P-STMO-S, 4 = P-STMO ({MODEL_DEFAULT})")
    g.add_argument('--channel', type=POSITIVE_INT, default=None, metavar='C',
                   help=f"STMO/Strided: width ({MODEL_DEFAULT}: 256)")
    g.add_argument('--d_hid', type=POSITIVE_INT, default=None, metavar='C',
                   help=f"STMO/Strided: feed-forward width ({MODEL_DEFAULT}: 512)")
    g.add_argument('-tds', '--tds', type=POSITIVE_INT, default=None, metavar='K',
                   help='temporal downsampling: centre-frame windows take every K-th frame (P-STMO) '
                        '(default: the checkpoint\'s record, else 1)')
    g.add_argument('--MAE', action='store_true', default=None, help='STMO stage I: masked pose pretraining')
    g.add_argument('-tmr', '--temporal_mask_rate', type=FRACTION, default=None, metavar='RATE',
                   help=f'stage I: masked frame rate, in [0, 1) ({MODEL_DEFAULT})')
    g.add_argument('-smn', '--spatial_mask_num', type=COUNT, default=None, metavar='N',
                   help=f'stage I: masked joints per frame ({MODEL_DEFAULT})')
    g.add_argument('--MAE_reload', type=SWITCH_01, default=0, metavar='0|1',
                   help='1: initialise the encoder from the stage I file given by --previous_dir')
    g.add_argument('--preset', default=None,
                   help=f"Uplift-and-Upsample configuration: h36m_351, h36m_351_pt, amass_351, h36m_81 "
                        f"({MODEL_DEFAULT}: h36m_351)")
    g.add_argument('--forced_mask_stride', '--mask-stride', dest='mask_stride', type=POSITIVE_INT, default=None,
                   metavar='S', help='Uplift-and-Upsample: evaluate with this keyframe spacing s_in only '
                                     '(default: each of the model\'s)')
    g.add_argument('--refine', action='store_true', help='use the refine module (P-STMO / Strided). Evaluating: '
                   'apply the module of --previous_refine_name; training: train the lifter (e.g. loaded with '
                   '--reload 1 --previous_dir) and a refine module together on the refined centre frame. It uses '
                   'the ground-truth root depth and the camera intrinsics, as the published protocol')
    g.add_argument('--refine_reload', type=SWITCH_01, nargs='?', const=1, default=0, metavar='0|1',
                   help='1: load the refine module weights from --previous_refine_name')
    g.add_argument('--previous_refine_name', default=None, metavar='FILE', help='refine module checkpoint')
    g.add_argument('--lr_refine', type=POSITIVE, default=None, metavar='LR',
                   help='initial learning rate of the refine module while training (default: --lr, as the '
                        'released scripts, which define this flag but never read it)')

    g = groups['training']
    g.add_argument('--train', type=SWITCH_01, default=None, metavar='0|1',
                   help='P-STMO spelling: 1 = train, 0 = evaluate (default: train, unless a checkpoint is '
                        'given to evaluate)')
    g.add_argument('-e', '--epochs', '--nepoch', dest='epochs', type=number(int, 0, note=' (0: evaluate only)'),
                   default=TRAIN.epochs, metavar='N',
                   help='training epochs; 0: no training, evaluate the model as built or loaded')
    g.add_argument('-b', '--batch-size', '--batch_size', dest='batch_size', type=POSITIVE_INT,
                   default=TRAIN.batch_size, metavar='N', help='windows per optimisation step')
    g.add_argument('-lr', '--lr', '--learning-rate', dest='lr', type=POSITIVE, default=TRAIN.lr, metavar='LR',
                   help='initial learning rate')
    g.add_argument('-lrd', '--lr-decay', '--lr_decay', dest='lr_decay', type=number(float, 0, 1, low_open=True),
                   default=TRAIN.lr_decay, metavar='FACTOR', help='learning rate factor per epoch, in (0, 1]')
    g.add_argument('--weight-decay', type=NON_NEGATIVE, default=TRAIN.weight_decay, metavar='W',
                   help='optimizer weight decay')
    g.add_argument('--optimizer', choices=['adamw', 'adam', 'adam_amsgrad'], default=None,
                   help="optimizer (default: the model's, else AdamW)")
    g.add_argument('--warmup', type=COUNT, default=TRAIN.warmup_epochs, metavar='EPOCHS',
                   help='linear learning-rate warm-up')
    g.add_argument('--clip-grad', type=POSITIVE, default=None, metavar='NORM',
                   help='clip gradients to this norm (default: no clipping)')
    g.add_argument('-s', '--stride', type=POSITIVE_INT, default=None, metavar='N',
                   help='window spacing (default: F between seq2seq window starts, 1 between centre frames)')
    g.add_argument('--random-shift', action='store_true', default=WINDOWS.random_shift,
                   help='shift seq2seq windows randomly every epoch')
    g.add_argument('-no-da', '--no-data-augmentation', dest='data_augmentation', action='store_false',
                   default=WINDOWS.flip,
                   help='turn OFF train-time flip augmentation (it is on by default)')
    g.add_argument('--seed', type=COUNT, default=TRAIN.seed, help='random seed (CPU training is bitwise reproducible)')
    g.add_argument('--deterministic', action='store_true', help='deterministic GPU algorithms (slower)')
    g.add_argument('-gpu', '--gpu', type=int_list(0), default=None, metavar='IDS',
                   help='GPU ids; several = DataParallel in one process (for many GPUs prefer torchrun) '
                        '(default: GPU 0 if there is one, else the CPU)')
    g.add_argument('--workers', type=COUNT, default=TRAIN.workers, metavar='N', help='DataLoader worker processes')
    g.add_argument('--amp', action='store_true', default=TRAIN.amp, help='bf16 autocast')
    g.add_argument('--ema', type=number(float, 0, 1, low_open=True, high_open=True), default=TRAIN.ema,
                   metavar='DECAY', help='keep an EMA of the weights with this decay, e.g. 0.999 (default: off)')
    g.add_argument('--compile', action='store_true', default=TRAIN.compile, help='torch.compile the training step')
    g.add_argument('--accumulate', type=POSITIVE_INT, default=TRAIN.accumulate, metavar='N',
                   help='gradient accumulation steps')
    g.add_argument('--max-steps-per-epoch', type=POSITIVE_INT, default=TRAIN.max_steps_per_epoch,
                   help=argparse.SUPPRESS)
    g.add_argument('--ddp-timeout', type=POSITIVE, default=DEFAULT_TIMEOUT_S, metavar='SECONDS',
                   help='torchrun: a collective waiting longer than this fails (a rank died or hangs)')

    g = groups['checkpoints']
    g.add_argument('-c', '--checkpoint', default=TRAIN.checkpoint_dir, metavar='DIR', help='checkpoint directory')
    g.add_argument('--evaluate', default=None, metavar='FILE',
                   help='evaluate this checkpoint (a name inside -c DIR, or a path); ours or an official file')
    g.add_argument('--reload', type=SWITCH_01, nargs='?', const=1, default=0, metavar='0|1',
                   help='P-STMO spelling: 1 = load --previous_dir (evaluate it, or with --train 1 fine-tune it)')
    g.add_argument('--previous_dir', default=None, metavar='PATH', help='P-STMO / Strided checkpoint file or folder')
    g.add_argument('-r', '--resume', default=TRAIN.resume, metavar='FILE',
                   help='continue training from this checkpoint (a path, or a name inside -c DIR)')
    g.add_argument('--checkpoint-frequency', type=COUNT, default=TRAIN.checkpoint_frequency, metavar='N',
                   help='also keep epoch_N.pt every N epochs (0: off)')
    g.add_argument('--checkpoint-steps', type=COUNT, default=TRAIN.checkpoint_steps, metavar='N',
                   help='also update latest.pt every N steps (0: off)')
    g.add_argument('--trust-checkpoint', action='store_true', default=TRAIN.trust_checkpoint,
                   help='allow checkpoints that need full unpickling (can run code: trusted files only)')
    g.add_argument('-no-tta', '--no-test-time-augmentation', dest='test_time_augmentation', action='store_false',
                   default=EVALUATION.flip,
                   help='turn OFF test-time flip averaging (it is on by default)')
    g.add_argument('--output-unit', choices=['m', 'mm'], default=None,
                   help="unit of the model's 3D outputs (default: our checkpoint's record; P-STMO / APTPose "
                        "on MPI-INF-3DHP files (-d 3dhp): mm, as those releases train and publish; else m)")
    g.add_argument('--eval-zero-root', choices=['auto', 'yes', 'no'], default='auto',
                   help="zero the predicted root before scoring (auto, the default: the model's paper convention)")
    g.add_argument('-l', '--log', '--logdir', default=None, metavar='DIR',
                   help='log directory (default: log/<h36m or 3dhp>[_<-d>]_<model>_<time>, e.g. log/h36m_synthetic_stmo_20261202-101500)')
    g.add_argument('--nolog', action='store_true', help='no log directory (no tensorboard, log file)')
    g.add_argument('--results-json', default=TRAIN.results_json, metavar='FILE',
                   help='also write the results JSON here (default: only results.json in the log directory)')
    g.add_argument('--export-training-curves', action='store_true', default=TRAIN.export_training_curves,
                   help='save training_curves.png')
    if script == 'run.py':
        add_uplift_release_arguments(p)
    add_inference_arguments(p)
    if not viz:
        add_image_model_arguments(p)
    add_viz_arguments(p)  # render.py's, and run.py's --render (VideoPose3D's form)
    add_wild_arguments(p)  # one's own video: --input-keypoints, -d custom
    return p


def add_viz_arguments(p):
    g = p.add_argument_group('visualisation')
    g.add_argument('--viz-subject', default=None,
                   help='subject (S9), 3DHP sequence (TS1), or the video of --viz-custom')
    g.add_argument('--viz-action', default=None, help="action to render, e.g. 'Photo 1'")
    g.add_argument('--viz-camera', type=COUNT, default=0, metavar='N', help='camera index')
    g.add_argument('--viz-video', default=None, metavar='FILE', help='video to draw the 2D input over (default: none)')
    g.add_argument('--viz-skip', type=COUNT, default=0, metavar='N', help='skip the first N frames of the video')
    g.add_argument('--viz-output', default=None, metavar='FILE',
                   help='output: .gif, .mp4, .png (a grid of a few frames), or a name without extension for '
                        'both NAME.gif and NAME.mp4')
    g.add_argument('--viz-export', default=None, metavar='FILE', help='save the predicted 3D poses as .npy')
    g.add_argument('--viz-bitrate', type=POSITIVE_INT, default=3000, metavar='KBITS', help='MP4 bitrate (kbit/s)')
    g.add_argument('--viz-no-ground-truth', action='store_true', help='do not draw the ground truth')
    g.add_argument('--viz-limit', type=number(int, 1, accept=(-1,)), default=-1, metavar='N',
                   help='render only the first N frames (default: -1, all)')
    g.add_argument('--viz-downsample', type=POSITIVE_INT, default=1, metavar='K', help='render every K-th frame')
    g.add_argument('--viz-size', type=POSITIVE_INT, default=5, metavar='INCHES', help='panel size (inches)')
    g.add_argument('--viz-predictions', default=None, metavar='FILE',
                   help='render saved predictions (.npy from --viz-export, or a .npz) without a model')
    g.add_argument('--viz-custom', default=None, metavar='FILE', help='a custom 2D keypoint file (VideoPose3D format)')
