"""Release compatibility in one place: what the published files and workflows need beyond our
own checkpoints.

* official checkpoints recognised by their keys (each family's detector in the registry);
* Uplift-and-Upsample's Keras ``.h5`` weights, read into our checkpoint layout;
* records of files written before a field existed (the window frame step);
* the refine module: read from a P-STMO / Strided file, a Strided ``--previous_dir`` folder or a
  lifter + refiner file of ours, and paired with a lifter for the refine stage;
* the stage I -> stage II weight transfer of P-STMO / APTPose (``--MAE_reload``).
"""
import os
from typing import Optional

from common.train.checkpoint import load_checkpoint, make_checkpoint, read_checkpoint, split_checkpoint
from common.train.checkpoint import transfer_matching_weights
from common.errors import UserError


def read_model_file(path, trust: bool = False, h5_options: Optional[dict] = None):
    """A checkpoint object from any published format: ours, the PyTorch releases' layouts, or
    Uplift-and-Upsample's Keras ``.h5`` weights (converted to ours; built with ``h5_options``, the
    model keywords of its configuration file, when given)."""
    if os.fspath(path).endswith('.h5'):
        from common.keras_import import uplift_model_from_h5
        return make_checkpoint(uplift_model_from_h5(path, options=h5_options))
    return read_checkpoint(path, trust)


def model_spec_from_checkpoint(obj):
    """(model name, constructor config) stored in our checkpoint or recognised from an official one."""
    from models import detect_official_model
    state_dict, ours, meta = split_checkpoint(obj)
    if ours:
        return meta['model_name'], dict(meta.get('model_config', {}))
    found = detect_official_model(state_dict)
    if found is None:
        raise UserError('cannot tell which model this checkpoint belongs to; name it with --model')
    return found


def load_model(path, trust: bool = False):
    """A model rebuilt from a checkpoint file alone (ours: its record; official: recognised by
    its keys), weights loaded, in eval mode."""
    from models import build_model
    checkpoint = read_model_file(path, trust)
    name, config = model_spec_from_checkpoint(checkpoint)
    return load_checkpoint(build_model(name, **config), checkpoint)


def legacy_frame_step(obj) -> Optional[int]:
    """The frame step (-tds) our files recorded beside the model config before it was part of it."""
    _, ours, meta = split_checkpoint(obj)
    stored = meta.get('config') if ours else None
    if isinstance(stored, dict) and 'frame_step' not in meta.get('model_config', {}):
        return stored.get('tds') if stored.get('tds', 1) > 1 else None
    return None


def refine_file(path: Optional[str], previous_dir: Optional[str]) -> Optional[str]:
    """The refine module's file: ``path``, else the first 'r*.pth' of a --previous_dir folder
    (the Strided Transformer's layout), else None."""
    if path is None and previous_dir and os.path.isdir(previous_dir):
        names = sorted(n for n in os.listdir(previous_dir) if n.endswith('.pth') and n.startswith('r'))
        path = os.path.join(previous_dir, names[0]) if names else None
    return path


def load_refiner(path, num_joints: int, trust: bool = False):
    """The refine module of an official file, or the refiner of our lifter + refiner file."""
    from models import build_model
    checkpoint = read_checkpoint(path, trust)
    state_dict, ours, meta = split_checkpoint(checkpoint)
    if ours and meta.get('model_name') == 'refined':
        checkpoint = {k[len('refiner.'):]: v for k, v in state_dict.items() if k.startswith('refiner.')}
    return load_checkpoint(build_model('refine', num_joints=num_joints), checkpoint)


def pair_with_refiner(lifter, refiner=None):
    """The refine stage's model: ``lifter`` as loaded and a refine module (fresh, or ``refiner``'s
    weights), trained together; recorded as the registry's ``refined``."""
    from models.refine import with_refiner
    try:
        pair = with_refiner(lifter)
    except ValueError as err:
        raise UserError(f'--refine: {err}') from None
    if refiner is not None:
        pair.refiner.load_state_dict(refiner.state_dict())
    return pair


def transfer_stage_one(model, path, trust: bool = False):
    """Copy a stage I (masked pretraining) file's encoder weights into a stage II model;
    returns the copied keys."""
    return transfer_matching_weights(model, read_checkpoint(path, trust))


# What a release's own parser builds when its on/off switches are absent, for models whose
# hyper-parameters come from the command line: PoseRetNet's `--model retnet` alone is causal and
# without per-joint decay (the published commands pass --joint-related --uncausal).
RELEASE_SWITCH_DEFAULTS = {'retnet': {'joint_related': False, 'causal': True}}


def family_from_flags(videopose: bool, stmo: bool, retnet: bool) -> str:
    """The model family a published training command means when it names none: VideoPose3D's
    -arc, P-STMO's masking / layer / -tds flags, PoseRetNet's chunk and decay switches."""
    return 'videopose' if videopose else 'stmo' if stmo else 'retnet' if retnet else 'videopose'


def main_model_file(previous_dir) -> str:
    """--previous_dir names a file, or a folder of Strided Transformer files whose first '*.pth'
    starting with 'n' (no_refine_*) is the main model."""
    if not os.path.isdir(previous_dir):
        return previous_dir
    names = sorted(n for n in os.listdir(previous_dir) if n.endswith('.pth') and n.startswith('n'))
    if not names:
        raise UserError(f"no main-model file (no_refine_*.pth) in '{previous_dir}'")
    return os.path.join(previous_dir, names[0])
