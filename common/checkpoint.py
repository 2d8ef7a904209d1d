"""Checkpoints: atomic saving of ours, safe loading of ours and of every official layout.

Our layout (a plain dict, loadable with ``weights_only=True``)::

    {'format': 'unilift-1', 'model_name': str, 'model_config': dict,
     'model': state_dict, 'optimizer': state_dict | None, 'epoch': int, ...}

Official layouts recognised: ``{'model_pos': state_dict, ...}`` (VideoPose3D,
PoseRetNet), ``{'model': state_dict, ...}`` (Context-Aware PoseFormer) and a bare
state dict (P-STMO, APTPose, Strided Transformer); keys with or without ``module.``.
"""
import io
import os
import pickle
import tempfile
from collections import OrderedDict

import numpy as np
import torch

from common.errors import UserError

FORMAT = 'unilift-1'

# Globals a checkpoint may reference beyond torch's own weights-only set: the numpy
# pieces of a RandomState state tuple and of numpy scalars (PoseRetNet saves them).
_NUMPY_SAFE = [np.ndarray, np.dtype, np.random.RandomState]
for _path in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    try:
        _mod = __import__(_path, fromlist=['_reconstruct', 'scalar'])
        _NUMPY_SAFE += [_mod._reconstruct, _mod.scalar]
    except (ImportError, AttributeError):
        pass
_NUMPY_SAFE += [type(np.dtype(t)) for t in
                ('uint32', 'int64', 'int32', 'float64', 'float32', 'bool', 'uint8')]


def read_checkpoint(path, trust: bool = False, map_location='cpu'):
    """Read a checkpoint file without running code it may carry.

    trust -- allow full unpickling (only for files from a source you trust)."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = []
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip checkpoint: fall back to torch's own message
            pass
        allowed = {f'{g.__module__}.{g.__qualname__}' for g in _NUMPY_SAFE if hasattr(g, '__qualname__')}
        unsafe = [u for u in unsafe if u not in allowed]
        if unsafe:
            raise UserError(f"checkpoint '{path}' refers to {unsafe[0]}, which loading would have to "
                            f"execute; refused (pass --trust-checkpoint only if you trust its source)") from None
        raise UserError(f"checkpoint '{path}' cannot be read safely: {str(err).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"checkpoint '{path}' is unreadable or truncated: {str(err).splitlines()[0]}") from None


def strip_module_prefix(state_dict):
    """Remove the ``module.`` prefix nn.DataParallel / DDP put on every key."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    return state_dict


def _is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def split_checkpoint(obj):
    """Return (state_dict without ``module.``, is_ours, metadata dict) for any known layout."""
    if isinstance(obj, dict) and obj.get('format') == FORMAT:
        return strip_module_prefix(obj['model']), True, obj
    if isinstance(obj, dict):
        for key in ('model_pos', 'model', 'state_dict'):
            if _is_state_dict(obj.get(key)):
                return strip_module_prefix(obj[key]), False, obj
    if _is_state_dict(obj):
        return strip_module_prefix(obj), False, {}
    raise UserError('checkpoint has no model weights in any known layout '
                    "(expected ours, {'model_pos': ...}, {'model': ...} or a bare state dict)")


def model_spec_from_checkpoint(obj):
    """(model name, constructor config) stored in or recognised from a checkpoint object."""
    state_dict, ours, meta = split_checkpoint(obj)
    if ours:
        return meta['model_name'], dict(meta.get('model_config', {}))
    from models import detect_official_model
    found = detect_official_model(state_dict)
    if found is None:
        raise UserError('cannot tell which model this checkpoint belongs to; name it with --model')
    return found


def _mismatch_message(model_sd, file_sd, limit=5):
    missing = [k for k in model_sd if k not in file_sd]
    unexpected = [k for k in file_sd if k not in model_sd]
    shapes = [f'{k}: file {tuple(file_sd[k].shape)} vs model {tuple(v.shape)}'
              for k, v in model_sd.items() if k in file_sd and file_sd[k].shape != v.shape]
    parts = []
    if shapes:
        parts.append('shape mismatch ' + '; '.join(shapes[:limit]))
    if missing:
        parts.append('missing ' + ', '.join(missing[:limit]))
    if unexpected:
        parts.append('unexpected ' + ', '.join(unexpected[:limit]))
    return ' | '.join(parts)


def load_checkpoint(model, path_or_object, trust: bool = False, strict=None):
    """Load weights from a path or an already-read checkpoint object into ``model``.

    Accepts our layout and every official one (see module docstring), with or without
    ``module.``. Official files go through ``model.convert_official_state_dict`` when
    the model defines it. Returns the model in eval mode."""
    obj = read_checkpoint(path_or_object, trust) if isinstance(path_or_object, (str, os.PathLike)) \
        else path_or_object
    state_dict, ours, _ = split_checkpoint(obj)
    if strict is None:
        strict = ours or getattr(model, 'official_strict', True)
    if not ours and hasattr(model, 'convert_official_state_dict'):
        state_dict = model.convert_official_state_dict(state_dict)
    model_sd = model.state_dict()
    problem = _mismatch_message(model_sd, state_dict)
    shape_bad = any(k in state_dict and state_dict[k].shape != v.shape for k, v in model_sd.items())
    missing = any(k not in state_dict for k in model_sd)
    if shape_bad or missing or (strict and problem):
        name = getattr(model, 'model_name', type(model).__name__)
        raise UserError(f'checkpoint does not fit model {name}: {problem}')
    model.load_state_dict({k: state_dict[k] for k in model_sd}, strict=True)
    return model.eval()


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj, path):
    """torch.save to a temporary file in the same directory, fsync, then rename over ``path``:
    a crash at any moment leaves either the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.pt', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def unwrap(model):
    """The bare model inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, 'module'):
            model = model.module
        elif hasattr(model, '_orig_mod'):
            model = model._orig_mod
        else:
            return model


def make_checkpoint(model, **extra):
    """Our checkpoint dict for ``model`` (unwrapped, so keys never carry ``module.``)."""
    bare = unwrap(model)
    payload = {'format': FORMAT, 'model_name': bare.model_name,
               'model_config': dict(bare.model_config), 'model': bare.state_dict()}
    payload.update(extra)
    return payload


def transfer_matching_weights(model, checkpoint_obj):
    """Copy every tensor of ``checkpoint_obj`` whose key and shape exist in ``model``
    (stage I -> stage II encoder transfer); returns the copied keys."""
    state_dict, _, _ = split_checkpoint(checkpoint_obj)
    bare = unwrap(model)
    if hasattr(bare, 'convert_official_state_dict') and not (isinstance(checkpoint_obj, dict)
                                                             and checkpoint_obj.get('format') == FORMAT):
        state_dict = bare.convert_official_state_dict(state_dict)
    own = bare.state_dict()
    copied = [k for k, v in state_dict.items() if k in own and own[k].shape == v.shape]
    bare.load_state_dict({**own, **{k: state_dict[k] for k in copied}})
    return copied
