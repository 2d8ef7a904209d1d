"""Import of Keras ``.h5`` weight files (``save_weights`` format) without TensorFlow.

A Keras weight file has one HDF5 group per top-level layer (root attribute
``layer_names``, in construction order); each group lists its variables in the
attribute ``weight_names``. Keras itself loads by group name and, inside a group, by
position: the inner variable names carry process-wide counters (``dense_7``,
``layer_normalization_22``) that differ between files, so they are never matched here.

Uplift-and-Upsample files: ``load_uplift_h5(model, path)`` loads into a built model,
``uplift_model_from_h5(path)`` recognises the released configuration and builds it.
"""
import os
import re
from collections import OrderedDict

import numpy as np
import torch

from common.errors import UserError

__all__ = ['load_keras_h5', 'uplift_state_dict_from_h5', 'load_uplift_h5',
           'uplift_options_from_h5', 'uplift_model_from_h5']


def _text(values):
    return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]


def load_keras_h5(path):
    """All variables of a Keras weight file, in file order.

    Returns an OrderedDict '<layer group>/<weight name>' -> numpy array, e.g.
    'spatial_block_1/spatial_block_1/mha/dense/kernel:0' (the HDF5 dataset path)."""
    import h5py
    if not os.path.isfile(path):
        raise UserError(f"weight file '{path}' does not exist")
    try:
        with h5py.File(path, 'r') as handle:
            root = handle
            if 'layer_names' not in root.attrs and 'model_weights' in root:
                root = root['model_weights']   # a whole-model save: weights live one level down
            if 'layer_names' not in root.attrs:
                raise UserError(f"'{path}' is not a Keras weight file (no layer_names attribute)")
            arrays = OrderedDict()
            for group in _text(root.attrs['layer_names']):
                for name in _text(root[group].attrs.get('weight_names', [])):
                    arrays[f'{group}/{name}'] = np.asarray(root[group][name])
            return arrays
    except OSError as err:
        raise UserError(f"'{path}' is not a readable HDF5 file: {err}") from None


def _by_group(arrays):
    groups = OrderedDict()
    for key, value in arrays.items():
        groups.setdefault(key.split('/', 1)[0], []).append(value)
    return groups


def _dense(prefix, kernel, bias):
    """Keras Dense (kernel (in, out), x @ kernel + bias) -> nn.Linear entries."""
    return {f'{prefix}.weight': kernel.T, f'{prefix}.bias': bias}


def _transformer_block(prefix, v, strided):
    """16 variables by position: norm1 (2), q, k, v, output projection (kernel, bias each),
    norm2 (2), MLP first layer (2), MLP second layer (2)."""
    if len(v) != 16:
        raise UserError(f'{prefix}: expected 16 variables (QKV_BIAS true), found {len(v)}')
    out = {f'{prefix}.norm1.weight': v[0], f'{prefix}.norm1.bias': v[1],
           f'{prefix}.attn.qkv.weight': np.concatenate([v[2].T, v[4].T, v[6].T]),
           f'{prefix}.attn.qkv.bias': np.concatenate([v[3], v[5], v[7]]),
           f'{prefix}.norm2.weight': v[10], f'{prefix}.norm2.bias': v[11]}
    out.update(_dense(f'{prefix}.attn.proj', v[8], v[9]))
    if strided:   # kernel-1 Conv1D (1, C, 2C) -> Linear; kernel-3 Conv1D (3, in, out) -> (out, in, 3)
        out.update(_dense(f'{prefix}.expand', v[12][0], v[13]))
        out.update({f'{prefix}.reduce.weight': v[14].transpose(2, 1, 0), f'{prefix}.reduce.bias': v[15]})
    else:
        out.update(_dense(f'{prefix}.mlp.fc1', v[12], v[13]))
        out.update(_dense(f'{prefix}.mlp.fc2', v[14], v[15]))
    return out


_SINGLE = {'spatial_pe': 'spatial_pe', 'temporal_pe': 'temporal_pe',
           'strided_input_token_layer': 'strided_input_token'}
_DENSE = {'keypoint_embedding': 'keypoint_embedding', 'spatial_to_temporal_fc': 'spatial_to_temporal',
          'temporal_fc': 'sequence_head', 'strided_temporal_fc': 'centre_head'}
_NUMBERED = re.compile(r'^(spatial_block|temporal_block|strided_temporal_block|strided_temporal_pe)_(\d+)$')
_BLOCK_LISTS = {'spatial_block': 'spatial_blocks', 'temporal_block': 'temporal_blocks',
                'strided_temporal_block': 'strided_blocks'}


def _convert_group(group, values):
    if not values:
        return {}   # token_dropout and other variable-free layers
    if group in _SINGLE and len(values) == 1:
        return {_SINGLE[group]: values[0]}
    if group in _DENSE and len(values) == 2:
        return _dense(_DENSE[group], *values)
    if group == 'spatial_norm' and len(values) == 2:
        return {'spatial_norm.weight': values[0], 'spatial_norm.bias': values[1]}
    numbered = _NUMBERED.match(group)
    if numbered:
        kind, index = numbered.group(1), int(numbered.group(2)) - 1
        if kind == 'strided_temporal_pe' and len(values) == 1:
            return {f'strided_pe.{index}': values[0]}
        if kind in _BLOCK_LISTS:
            return _transformer_block(f'{_BLOCK_LISTS[kind]}.{index}', values, kind.startswith('strided'))
    raise UserError(f"layer '{group}' ({len(values)} variables) has no counterpart in this model "
                    '(output BatchNorm, refine and token-masking variants are not supported)')


def uplift_state_dict_from_h5(path_or_arrays, model=None):
    """Uplift-and-Upsample ``.h5`` weights as our state dict (torch tensors).

    path_or_arrays -- a file path or the OrderedDict of ``load_keras_h5``
    model -- optional: when given, keys and shapes are checked against it."""
    arrays = load_keras_h5(path_or_arrays) if isinstance(path_or_arrays, (str, os.PathLike)) \
        else path_or_arrays
    state = OrderedDict()
    for group, values in _by_group(arrays).items():
        for key, value in _convert_group(group, values).items():
            state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if model is not None:
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}'
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
        if missing or extra or shapes:
            raise UserError('weight file does not fit the model: ' + '; '.join(
                part for part in (', '.join(shapes[:3]), 'missing ' + ', '.join(missing[:3]) if missing else '',
                                  'unexpected ' + ', '.join(extra[:3]) if extra else '') if part))
    return state


def load_uplift_h5(model, path_or_arrays):
    """Load an official Uplift-and-Upsample ``.h5`` file into ``model``; returns model.eval()."""
    state = uplift_state_dict_from_h5(path_or_arrays, model)
    model.load_state_dict(state, strict=True)
    return model.eval()


def uplift_options_from_h5(path_or_arrays):
    """Constructor keywords of the released configuration a weight file belongs to.

    Widths, depths and token counts are read from the shapes; the head count and the
    strides are not stored, so the file must match one of the presets."""
    from models.uplift_upsample import PRESETS, strided_token_counts
    arrays = load_keras_h5(path_or_arrays) if isinstance(path_or_arrays, (str, os.PathLike)) \
        else path_or_arrays
    groups = _by_group(arrays)
    if 'temporal_pe' not in groups or 'spatial_pe' not in groups:
        raise UserError('not an Uplift-and-Upsample weight file (no temporal_pe / spatial_pe layer)')
    found = dict(num_frame=groups['temporal_pe'][0].shape[0], temporal_dim=groups['temporal_pe'][0].shape[1],
                 spatial_dim=groups['spatial_pe'][0].shape[1], num_joints=groups['spatial_pe'][0].shape[0],
                 spatial_depth=sum(bool(re.match(r'spatial_block_\d+$', g)) for g in groups),
                 temporal_depth=sum(bool(re.match(r'temporal_block_\d+$', g)) for g in groups))
    counts = tuple(groups[g][0].shape[0] for g in groups if g.startswith('strided_temporal_pe_'))
    for name, preset in PRESETS.items():
        if all(preset[k] == v for k, v in found.items() if k != 'num_joints') and \
                strided_token_counts(preset['num_frame'], preset['strides'], preset['paddings'])[:-1] == counts:
            return {'preset': name, 'num_joints': found['num_joints']}
    raise UserError(f'weight file matches no released configuration ({found}, strided token counts '
                    f'{counts}); build the model with explicit options and use load_uplift_h5')


def uplift_model_from_h5(path, options=None, **overrides):
    """Build the Uplift-and-Upsample model a released ``.h5`` file belongs to and load it; with
    ``options`` (the keywords of its configuration file) build that model instead, and refuse a
    file that does not fit it."""
    from models import build_model
    arrays = load_keras_h5(path)
    if options is not None:
        try:
            return load_uplift_h5(build_model('uplift_upsample', **{**options, **overrides}), arrays)
        except UserError as err:
            raise UserError(f"the configuration (--config) contradicts the weights '{path}': {err}") from None
    model = build_model('uplift_upsample', **{**uplift_options_from_h5(arrays), **overrides})
    return load_uplift_h5(model, arrays)
