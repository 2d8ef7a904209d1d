"""Model registry: one name -> factory table for every lifter.

Usage::

    from models import build_model
    model = build_model('retnet', num_frame=243, joint_related=True)

Every registered model subclasses ``models.base.Lifter``, which declares the whole contract
(forward's shapes and unit, receptive field, what it predicts, its loss, whole-sequence prediction,
official-checkpoint conversion, ...), each capability with its default.

Flags left unset (``None``) fall back to the model's own defaults.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import importlib

import torch.nn as nn

__all__ = ['register_model', 'build_model', 'model_names', 'lifter_names', 'get_entry', 'detect_official_model']


@dataclass(frozen=True)
class ModelEntry:
    """name -- registry key; factory -- builds the module from keyword hyper-parameters;
    family -- model file it lives in; detect_official -- state_dict -> constructor kwargs
    (or None) for recognising an official checkpoint by its keys and shapes; selectable -- a
    user can pick it with --model (False for the parts other models are assembled from)."""
    name: str
    factory: Callable[..., nn.Module]
    family: str
    aliases: Tuple[str, ...] = ()
    detect_official: Optional[Callable[[dict], Optional[dict]]] = None
    priority: int = 0
    selectable: bool = True


_REGISTRY: Dict[str, ModelEntry] = {}
_ALIASES: Dict[str, str] = {}

# Model family modules, imported lazily on first registry access so that
# `import models` stays cheap and a broken optional family cannot break the rest.
_FAMILY_MODULES = ('videopose', 'retnet', 'mixste', 'stc', 'stmo', 'strided', 'refine',
                   'uplift_upsample', 'context_pose')
_loaded = False


def register_model(name: str, *, aliases=(), detect_official=None, priority: int = 0, selectable: bool = True):
    """Decorator registering a model class or factory function under ``name``.

    priority -- order in which official-checkpoint detectors are tried (higher first);
    selectable -- offered to users by --model (see ModelEntry)."""
    def decorate(factory):
        family = factory.__module__.rsplit('.', 1)[-1]
        entry = ModelEntry(name, factory, family, tuple(aliases), detect_official, priority, selectable)
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


def lifter_names():
    """The models a user can pick with --model, in the order the families are listed."""
    _load_families()
    return [name for name, entry in _REGISTRY.items() if entry.selectable]


def resolve_name(name: str) -> str:
    """The registry key of a name or alias (unchanged when unknown)."""
    _load_families()
    return _ALIASES.get(name, name)


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
    Three keywords apply to every model: ``output_unit`` ('m' or 'mm') records the unit its outputs
    are in, ``frame_step`` the spacing of the frames of a centre-frame window (P-STMO's -tds),
    ``input_layout`` the joint layout of its 2D input when it is not its output's (e.g. 'coco_17')."""
    entry = get_entry(name)
    config = {k: v for k, v in hyperparameters.items() if v is not None}
    unit, step = config.pop('output_unit', None), config.pop('frame_step', None)
    keypoint_layout = config.pop('input_layout', None)
    model = entry.factory(**config)
    model.model_name = entry.name
    model.model_config = dict(config)
    if keypoint_layout is not None:  # 2D of another layout than the output (COCO-17 detections)
        model.input_layout = keypoint_layout
        model.model_config['input_layout'] = keypoint_layout
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
