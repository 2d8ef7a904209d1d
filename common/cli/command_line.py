"""From the parsed command line to explicit values: model keywords, which checkpoint a command
means, and contradictions between flags. The runner and render.py call these; nothing below them
sees the namespace."""
import inspect
import os
from typing import Optional

from common import compat
from common.errors import UserError

MODEL_FLAGS = {  # canonical model keyword -> parsed attribute
    'num_frame': 'frames', 'filter_widths': 'architecture', 'channels': 'channels', 'dropout': 'dropout',
    'dense': 'dense', 'joint_related': 'joint_related', 'chunk_size': 'chunk_size',
    'gamma_divider': 'gamma_divider', 'trainable': 'trainable', 'train_mode': 'train_mode',
    'embed_dim': 'embed_dim', 'depth': 'depth', 'layers': 'layers', 'channel': 'channel', 'd_hid': 'd_hid',
    'temporal_mask_rate': 'temporal_mask_rate', 'spatial_mask_num': 'spatial_mask_num', 'pretrain': 'MAE',
    'preset': 'preset',
}


def explicit_model_kwargs(args) -> dict:
    """Model keywords the user set on the command line (canonical names)."""
    kwargs = {key: getattr(args, attr) for key, attr in MODEL_FLAGS.items() if getattr(args, attr) is not None}
    if args.causal:
        kwargs['causal'] = True
    elif args.uncausal:
        kwargs['causal'] = False
    return {**(getattr(args, 'model_options', None) or {}), **kwargs}  # --config's, then the typed flags


def accepted_kwargs(factory, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``factory``'s signature names."""
    params = inspect.signature(factory).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def infer_model_name(args) -> str:
    """The model a command means: --model, else the family its release-specific flags name."""
    stmo = (args.MAE or args.layers is not None or args.tds is not None or args.MAE_reload
            or args.temporal_mask_rate is not None or args.refine)
    retnet = args.chunk_size is not None or args.joint_related or args.uncausal
    return args.model or compat.family_from_flags(bool(args.architecture), bool(stmo), bool(retnet))


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
    if getattr(args, 'eval', False):   # Context-Aware PoseFormer's train.py --eval
        named = os.path.join(args.checkpoint, f"best_epoch_{args.backbone or 'hrnet_32'}.bin")
        plain = os.path.join(args.checkpoint, 'best_epoch.bin')   # the name its README downloads to
        return plain if not os.path.exists(named) and os.path.exists(plain) else named
    if args.reload and args.previous_dir and args.train != 1:
        return compat.main_model_file(args.previous_dir)
    return None


def checkpoint_to_finetune(args) -> Optional[str]:
    """The file whose model and weights training starts from: --reload 1 --previous_dir FILE
    with --train 1 (the released scripts' fine-tuning, e.g. before adding the refine module)."""
    if args.reload and args.previous_dir and args.train == 1 and not args.MAE_reload:
        return compat.main_model_file(args.previous_dir)
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
