"""The contract between a lifter and the engine: every capability the engine uses, with its default.

A model subclasses :class:`Lifter`, overrides what differs, and registers a factory
(``models.register_model``); nothing else. The engine reads these attributes and calls these
methods; it never asks which model it holds. Shapes are [B, T, J, C].
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from common.eval.metrics import mpjpe
from models.windows import predict_centre, predict_seq2seq


class Lifter(nn.Module):
    """Base of every registered 2D -> 3D lifter.

    ``forward(x)``: x [B, F, J_in, 2] normalised screen coordinates -> [B, F_out, J_out, 3]
    root-relative positions in ``output_unit``; F_out is F (``predicts == 'sequence'``) or 1
    (``'centre'``)."""

    model_name: Optional[str] = None  # registry name, set by build_model (with model_config)
    predicts: str = 'sequence'  # 'sequence': every frame of the window; 'centre': one frame
    receptive_field: int = 1  # input frames of one forward pass
    frame_step: int = 1  # spacing of those frames in a centre-frame window (P-STMO's -tds)
    causal_shift: int = 0  # frames the predicted frame lies after the window centre (causal models)
    input_layout: str = 'h36m_17'  # joint layout of the 2D input (common.data.skeleton.LAYOUTS)
    output_layout: str = 'h36m_17'  # joint layout of the 3D output
    output_unit: str = 'm'  # 'm' or 'mm': what the network's numbers mean (common.data.pose_codec)
    in_features: int = 2  # channels per 2D joint: x, y (3: and the detector's confidence)
    inputs: Tuple[str, ...] = ('keypoints',)  # also 'camera' (intrinsics, root depth), 'image_features'
    eval_zero_root: bool = False  # its paper scores the prediction with the root set to 0
    is_pretraining: bool = False  # a masked-pretraining stage: scored by its own objective
    has_unused_parameters: bool = False  # some parameters get no gradient (DDP must look for them)
    default_optimizer: str = 'adamw'  # what its release trains with ('adamw', 'adam', 'adam_amsgrad')
    official_strict: bool = True  # extra keys in an official checkpoint are an error
    shares_frame_features: bool = False  # embed_frames / forward_embedded exist (see below)

    @property
    def uses_camera(self) -> bool:
        """training_loss takes the windows' intrinsics [B, 9] and root depths [B, F] too."""
        return 'camera' in self.inputs

    @property
    def window_span(self) -> int:
        """Frames a centre-frame window covers: (receptive_field - 1) * frame_step + 1."""
        return (self.receptive_field - 1) * self.frame_step + 1

    def example_inputs(self, batch, generator=None):
        """forward's arguments for ``batch`` windows (export, backends, benchmarks): normalised 2D
        keypoints x [B, receptive_field, J_in, in_features] in [-0.5, 0.5)."""
        from common.data.skeleton import LAYOUTS
        joints = getattr(self, 'model_config', {}).get('num_joints') or LAYOUTS[self.input_layout].num_joints
        return (torch.rand(batch, self.receptive_field, joints, self.in_features, generator=generator) - 0.5,)

    def training_loss(self, x, target, intrinsics=None, root_depth=None):
        """The objective: x [B, F, J, 2], target [B, F, J, 3] (root-relative, output unit) ->
        scalar. Default: MPJPE of forward's output (the predicted frame of centre models)."""
        output = self(x)
        if output.shape[1] != target.shape[1]:
            centre = target.shape[1] // 2 + self.causal_shift
            target = target[:, centre:centre + 1]
        return mpjpe(output, target)

    def predict_sequence(self, x, max_batch: int = 1024):
        """Every frame of whole sequences: [B, T, J, 2] (any T >= 1) -> [B, T, J, 3]. Default:
        one edge-padded window per frame (centre models) or consecutive windows (sequence
        models), ``max_batch`` windows per forward."""
        if self.predicts == 'centre':
            return predict_centre(self, x, self.frame_step, max_batch)
        return predict_seq2seq(self, x, max_batch)

    def embed_frames(self, x):
        """Per-frame first stage, computed once per frame when ``shares_frame_features``:
        [B, T, J, 2] -> [B, T, ...]."""
        raise NotImplementedError(f'{type(self).__name__} has no per-frame first stage')

    def forward_embedded(self, features):
        """forward() from embed_frames' output gathered into windows."""
        raise NotImplementedError(f'{type(self).__name__} has no per-frame first stage')

    def convert_official_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """An official checkpoint's state dict (``module.`` removed) in our key names."""
        return state_dict

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called before every training epoch (schedules inside the model)."""

    def evaluation_variants(self) -> List[Tuple[Optional[str], dict]]:
        """(label, settings) of each evaluation its paper reports; [(None, {})]: one."""
        return [(None, {})]

    def use_evaluation_variant(self, settings: dict) -> None:
        """Switch to one of evaluation_variants()' settings."""
        for name, value in settings.items():
            setattr(self, name, value)

    def evaluation_refiner(self) -> Optional[nn.Module]:
        """A refine module evaluation applies to every predicted frame (needs the camera), or None."""
        return None
