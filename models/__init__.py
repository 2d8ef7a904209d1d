"""Model registry: one name -> factory table for every lifter.

Usage::

    from models import build_model
    model = build_model('retnet', num_frame=243, joint_related=True)

Contract every registered model follows (shapes as [B, T, J, C]):

* ``forward(x)``: ``x`` [B, T, J, 2] normalised screen coordinates ->
  [B, T_out, J, 3] root-relative positions in ``output_unit`` (metres unless the
  model was built with ``output_unit='mm'``, as the P-STMO / APTPose MPI-INF-3DHP
  files; see common/data/pose_codec.py). ``T_out`` is ``T`` for
  models that predict their whole window (``predicts == 'sequence'``) and 1 for
  those that predict the centre frame only (``predicts == 'centre'``).
* ``receptive_field`` (int): the number of input frames one forward pass sees.
* ``predicts``: ``'sequence'`` or ``'centre'``.
* optional ``training_loss(x, target) -> Tensor``: the model's own objective
  (auxiliary heads, masked pretraining); ``target`` is [B, T, J, 3], aligned
  with the input frames. Models without it are trained with MPJPE on their
  forward output.
* optional ``predict_sequence(x) -> Tensor``: [B, T, J, 2] -> [B, T, J, 3] for
  a whole sequence of any length, for models that have a better way than the
  engine's generic windowing (convolutions over the padded sequence, chunkwise
  retention).
* optional ``convert_official_state_dict(state_dict) -> state_dict``: maps an
  official checkpoint's keys (``module.`` already stripped) onto ours;
  ``official_strict`` (bool, default True) says whether extra keys in an
  official file are an error (P-STMO's loader ignores them).

Flags left unset (``None``) fall back to the model's own defaults.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import importlib

import torch.nn as nn

__all__ = ['register_model', 'build_model', 'model_names', 'get_entry', 'detect_official_model']


@dataclass(frozen=True)
class ModelEntry:
    """name -- registry key; factory -- builds the module from keyword hyper-parameters;
    family -- model file it lives in; detect_official -- state_dict -> constructor kwargs
    (or None) for recognising an official checkpoint by its keys and shapes."""
    name: str
    factory: Callable[..., nn.Module]
    family: str
    aliases: Tuple[str, ...] = ()
    detect_official: Optional[Callable[[dict], Optional[dict]]] = None
    priority: int = 0


_REGISTRY: Dict[str, ModelEntry] = {}
_ALIASES: Dict[str, str] = {}

# Model family modules, imported lazily on first registry access so that
# `import models` stays cheap and a broken optional family cannot break the rest.
_FAMILY_MODULES = ('videopose', 'retnet', 'mixste', 'stc', 'stmo', 'strided', 'refine',
                   'uplift_upsample', 'context_pose')
_loaded = False


def register_model(name: str, *, aliases=(), detect_official=None, priority: int = 0):
    """Decorator registering a model class or factory function under ``name``.

    priority -- order in which official-checkpoint detectors are tried (higher first)."""
    def decorate(factory):
        family = factory.__module__.rsplit('.', 1)[-1]
        entry = ModelEntry(name, factory, family, tuple(aliases), detect_official, priority)
        _REGISTRY[name] = entry
        for alias in aliases:
            _ALIASES[alias] = name
        return factory
    return decorate


def _load_families():
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(f'{__name__}.{module}')
        except ModuleNotFoundError as err:
            if err.name != f'{__name__}.{module}':
                raise


def model_names():
    """Sorted list of registered model names."""
    _load_families()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_families()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown model '{name}'; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def build_model(name: str, **hyperparameters) -> nn.Module:
    """Build a registered model. Unset (None) hyper-parameters take the model's defaults.

    The returned module carries ``model_name`` and ``model_config`` (the keyword
    arguments it was built with) so that a checkpoint can rebuild it alone.
    Two keywords apply to every model: ``output_unit`` ('m' or 'mm') records the unit its outputs
    are in, ``frame_step`` the spacing of the frames of a centre-frame window (P-STMO's -tds)."""
    entry = get_entry(name)
    config = {k: v for k, v in hyperparameters.items() if v is not None}
    unit, step = config.pop('output_unit', None), config.pop('frame_step', None)
    model = entry.factory(**config)
    model.model_name = entry.name
    model.model_config = dict(config)
    if unit is not None:
        from common.data.pose_codec import check_unit
        model.output_unit = check_unit(unit)
        model.model_config['output_unit'] = unit
    if step is not None:
        if int(step) < 1:
            raise ValueError(f'frame_step must be at least 1, not {step}')
        model.frame_step = int(step)
        model.model_config['frame_step'] = int(step)
    return model


def detect_official_model(state_dict: dict):
    """Return (name, constructor kwargs) of the registered model an official state dict
    belongs to, or None. ``state_dict`` has any ``module.`` prefix already removed."""
    _load_families()
    for entry in sorted(_REGISTRY.values(), key=lambda e: -e.priority):
        if entry.detect_official is None:
            continue
        config = entry.detect_official(state_dict)
        if config is not None:
            return entry.name, config
    return None
