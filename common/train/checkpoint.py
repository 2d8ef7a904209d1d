"""Checkpoints: atomic saving of ours, safe loading of ours and of every official layout.

Our layout (a plain dict, loadable with ``weights_only=True``)::

    {'format': 'unilift-1', 'model_name': str, 'model_config': dict,
     'model': state_dict, 'optimizer': state_dict | None, 'epoch': int, ...}

Official layouts recognised: ``{'model_pos': state_dict, ...}`` (VideoPose3D,
PoseRetNet), ``{'model': state_dict, ...}`` (Context-Aware PoseFormer) and a bare
state dict (P-STMO, APTPose, Strided Transformer); keys with or without ``module.``.
"""
import os
import pickle
import re
import secrets
import warnings
from collections import OrderedDict

import numpy as np
import torch

from common.errors import UserError

FORMAT = 'unilift-1'

# Globals a checkpoint may reference beyond torch's own weights-only set (tensors, numbers,
# strings, dicts, lists, tuples): numpy arrays, dtypes and scalars, and numpy's legacy RNG
# (PoseRetNet saves its RandomState, or its state tuple). Each only rebuilds data.
def _numpy_safe_globals():
    import numpy.random._pickle as rng_pickle
    allowed = [np.ndarray, np.dtype, np.random.RandomState, np.random.MT19937,
               getattr(rng_pickle, '__randomstate_ctor'), getattr(rng_pickle, '__bit_generator_ctor')]
    for module_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            module = __import__(module_name, fromlist=['_reconstruct', 'scalar'])
            allowed += [module._reconstruct, module.scalar]
        except (ImportError, AttributeError):
            pass
    allowed += [type(np.dtype(t)) for t in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                                           'uint32', 'uint64', 'float16', 'float32', 'float64', 'complex64',
                                           'complex128', 'U1', 'S1', 'O')]
    return allowed


_NUMPY_SAFE = _numpy_safe_globals()
_NUMPY_SAFE_NAMES = {f'{g.__module__}.{g.__qualname__}' for g in _NUMPY_SAFE}


def _refused_global(path, err):
    """The first global the file references that the safe loader does not allow, or None."""
    names = []
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the unpickler's message names it, if anything
        names = re.findall(r'GLOBAL ([\w.]+)', str(err))
    names = [n for n in names if n not in _NUMPY_SAFE_NAMES]
    return names[0] if names else None


def read_checkpoint(path, trust: bool = False, map_location='cpu'):
    """Read a checkpoint file without running code it may carry.

    Only plain data is rebuilt (tensors, numbers, strings, dicts, lists, tuples, numpy arrays
    and numpy's RNG state); a file that references anything else is refused with a one-line
    error naming it. trust -- allow full unpickling (only for files from a source you trust)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint '{path}' is a directory, not a file")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist")
    kind = _file_kind(path)
    if kind:
        raise UserError(f"checkpoint '{path}' is {kind}, not a PyTorch checkpoint (expected a .pt / .pth / "
                        f".bin file written by torch.save, or a Keras .h5)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*pickle protocol.*')
            if trust:
                return torch.load(path, map_location=map_location, weights_only=False)
            with torch.serialization.safe_globals(_NUMPY_SAFE):
                return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_global(path, err)
        if refused:
            raise UserError(f"checkpoint '{path}' refers to {refused}, which loading would have to "
                            f"execute; refused (pass --trust-checkpoint only if you trust its source)") from None
        detail = next((line.strip() for line in str(err).splitlines() if 'Unsupported' in line), 'not plain data')
        raise UserError(f"checkpoint '{path}' cannot be read safely ({detail}); pass "
                        f"--trust-checkpoint only if you trust its source") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"checkpoint '{path}' is unreadable or truncated: {_first_line(err)}") from None


def _file_kind(path):
    """'a text file' / 'an empty file' / 'an HDF5 file' for files that are no torch.save output
    (a zip archive or a pickle), else None."""
    with open(path, 'rb') as handle:
        head = handle.read(512)
    if not head:
        return 'an empty file'
    if head.startswith(b'\x89HDF'):
        return 'an HDF5 file (Keras weights load from a name ending in .h5)'
    if head.startswith(b'PK') or head[:1] == b'\x80':
        return None
    try:
        head.decode('utf-8')
    except UnicodeDecodeError:
        return None
    return 'a text file'



def _first_line(err):
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


_WRAPPER_PREFIXES = ('module.', '_orig_mod.')


def strip_module_prefix(state_dict):
    """Remove the prefixes wrappers put on every key: ``module.`` (nn.DataParallel, DDP) and
    ``_orig_mod.`` (torch.compile), also when nested."""
    while state_dict:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            break
        state_dict = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
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
    state_dict, ours, meta = split_checkpoint(obj)
    if strict is None:
        strict = ours or model.official_strict
    if not ours:
        state_dict = model.convert_official_state_dict(state_dict)
    model_sd = model.state_dict()
    problem = _mismatch_message(model_sd, state_dict)
    shape_bad = any(k in state_dict and state_dict[k].shape != v.shape for k, v in model_sd.items())
    missing = any(k not in state_dict for k in model_sd)
    if shape_bad or missing or (strict and problem):
        name = model.model_name or type(model).__name__
        holds = f" (it holds {meta['model_name']} {meta.get('model_config', {})})" if ours else ''
        raise UserError(f'checkpoint does not fit model {name}{holds}: {problem}')
    model.load_state_dict({k: state_dict[k] for k in model_sd}, strict=True)
    return model.eval()


PARTIAL_SUFFIX = '.partial'


def fsync_dir(directory):
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj, path):
    """torch.save to a temporary file in the same directory, flush, fsync, then rename over
    ``path``: a crash at any moment leaves either the old file or the new one, never half of
    one. The temporary file is named ``.<name>.<random>.partial`` (never ``*.pt``); one that a
    killed process leaves behind is removed by :func:`remove_partial_files`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f'.{os.path.basename(path)}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, 'wb') as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_partial_files(directory):
    """Delete the temporary files of checkpoint writes that were killed; returns their names."""
    if not os.path.isdir(directory):
        return []
    stale = [n for n in os.listdir(directory) if n.startswith('.') and n.endswith(PARTIAL_SUFFIX)]
    for name in stale:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    return stale


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
    """Copy every tensor of ``checkpoint_obj`` whose key exists in ``model`` (the stage I ->
    stage II encoder transfer of ``--MAE_reload``: encoders, mask tokens, temporal encoder); the
    rest keeps its values. A shared key of another shape is an error, as in the releases.
    Returns the sorted copied keys."""
    state_dict, ours, _ = split_checkpoint(checkpoint_obj)
    bare = unwrap(model)
    if not ours:
        state_dict = bare.convert_official_state_dict(state_dict)
    own = bare.state_dict()
    copied = sorted(k for k in state_dict if k in own)
    wrong = [f'{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
             for k in copied if state_dict[k].shape != own[k].shape]
    if wrong:
        raise UserError('the stage I weights do not fit this model: ' + '; '.join(wrong[:5]))
    bare.load_state_dict({**own, **{k: state_dict[k] for k in copied}})
    return copied
