"""Output units of lifters: what a network's numbers mean, recorded with the model.

Everything inside the engine is in metres. A model whose weights were trained on millimetre
targets (P-STMO's and APTPose's MPI-INF-3DHP files, and ours trained as those releases train)
declares ``output_unit = 'mm'``; its outputs are converted at the boundary: predictions are
divided by 1000 before scoring, rendering and export, training targets (and the refine
module's ground-truth root depth) are multiplied by 1000 before the loss.
"""
UNIT_SCALE = {'m': 1.0, 'mm': 1000.0}  # model units per metre
DEFAULT_UNIT = 'm'


def check_unit(unit):
    if unit not in UNIT_SCALE:
        raise ValueError(f"output_unit must be one of {', '.join(UNIT_SCALE)}, not {unit!r}")
    return unit


def output_unit(model) -> str:
    """The unit of ``model``'s 3D outputs ('m' for models that do not declare one)."""
    from common.checkpoint import unwrap
    return getattr(unwrap(model), 'output_unit', DEFAULT_UNIT)


def unit_scale(model) -> float:
    """Model units per metre: 1 for metre models, 1000 for millimetre models."""
    return UNIT_SCALE[output_unit(model)]
