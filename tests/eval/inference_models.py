"""One tiny configuration of every registered lifter, for the backend and export tests."""
import pytest
import torch

from models import build_model, model_names

TINY = {
    'videopose': dict(filter_widths=[3, 3], channels=16),
    'retnet': dict(num_frame=9, embed_dim=16, depth=1, num_heads=2, chunk_size=3),
    'mixste': dict(num_frame=9, embed_dim=16, depth=1, num_heads=2),
    'stc': dict(num_frame=9, embed_dim=16, depth=1),
    'stmo': dict(num_frame=9, layers=2, channel=16, d_hid=32, stride_num=[3, 3]),
    'aptpose': dict(num_frame=9, layers=2, channel=16, d_hid=32, stride_num=[3, 3]),
    'strided': dict(num_frame=9, layers=2, channel=16, d_hid=32, stride_num=[3, 3]),
    'uplift_upsample': dict(preset='h36m_81', spatial_dim=16, temporal_dim=16, depth=1, num_heads=2),
    'context_pose': dict(feature_channels=[4, 4, 4, 4], embed_dim_ratio=8, num_heads=2, deform_heads=2,
                         deform_samples=2),
    'refine': dict(fc_unit=16),
    'refined': dict(lifter='strided', lifter_config=dict(num_frame=9, layers=2, channel=16, d_hid=32,
                                                         stride_num=[3, 3]), fc_unit=16),
}


def tiny_model(name, seed=0, **extra):
    """``name`` at its tiny size, random weights perturbed away from any zero initialisation
    (so that every layer matters to the output), in eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, **{**TINY[name], **extra}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point() and parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return model



every_lifter = pytest.mark.parametrize('name', sorted(TINY))


def tolerance(name):
    """|backend - eager| allowed, in the model's unit (metres): 1e-4; Context-Aware PoseFormer 3e-4,
    whose bilinear sampling of rough random feature maps turns float rounding of the sampling
    positions into differences of about 1e-4 between ONNX Runtime's and torch's grid_sample."""
    return 3e-4 if name == 'context_pose' else 1e-4
