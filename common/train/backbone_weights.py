"""Image backbones for the models that lift from image features: building one by name, loading
its published weights file, and the fingerprint of the weights a feature cache records.

Published files: the COCO HRNet state dicts of deep-high-resolution-net
(``pose_hrnet_w32_256x192.pth``, ``pose_hrnet_w48_256x192.pth``: no wrapper, no prefix, plus the
unused heat-map head ``final_layer.*``) and CPN's ``CPN50_256x192.pth.tar`` (``{'epoch',
'state_dict', 'optimizer'}``, ``module.`` keys, every entry used). ``random`` builds a seeded random backbone instead (for
the synthetic dataset and tests only: its features mean nothing).
"""
import hashlib
import os

import torch

from common.errors import UserError
from common.train.checkpoint import read_checkpoint, split_checkpoint

RANDOM_WEIGHTS = 'random'
# where the release keeps the COCO files (experiments/human36m/human36m.yaml, train.py)
RELEASE_WEIGHT_FILES = {'hrnet_32': 'data/pretrained/coco/pose_hrnet_w32_256x192.pth',
                        'hrnet_48': 'data/pretrained/coco/pose_hrnet_w48_256x192.pth',
                        'cpn': 'data/pretrained/coco/CPN50_256x192.pth.tar'}
UNUSED_PREFIXES = ('final_layer.',)


def build_backbone(name: str, seed: int = 0):
    """The backbone network called ``name`` (randomly initialised from ``seed``), frozen."""
    from models.cpn import build_cpn
    from models.hrnet import PRESETS, build_hrnet
    if name != 'cpn' and name not in PRESETS:
        raise UserError(f"unknown backbone '{name}'; choose one of cpn, {', '.join(PRESETS)}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    backbone = build_cpn() if name == 'cpn' else build_hrnet(name)
    torch.random.set_rng_state(generator_state)
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    return backbone.eval()


def backbone_state_from_file(path_or_object, trust: bool = False):
    """The backbone's tensors in a weights file (or its already-read object): a COCO state dict
    (``final_layer.*`` dropped), or a complete network (``backbone.*`` of an official
    ``best_epoch.bin`` or of ours)."""
    is_path = isinstance(path_or_object, (str, os.PathLike))
    state_dict, _, _ = split_checkpoint(read_checkpoint(path_or_object, trust) if is_path else path_or_object)
    if any(k.startswith('backbone.') for k in state_dict):
        return {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    return {k: v for k, v in state_dict.items() if not k.startswith(UNUSED_PREFIXES)}


def load_backbone_weights(backbone, path, name: str, trust: bool = False, source=None):
    """Copy the weights of ``path`` (or of ``source``, the file's content read already) into
    ``backbone``; a file of another width or layout is one line naming the file and what to pass
    instead. Files without ``num_batches_tracked`` load."""
    state = backbone_state_from_file(path if source is None else source, trust)
    own = backbone.state_dict()
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape]
    if wrong:
        key, found, expected = wrong[0]
        width = found[0] if key == 'transition1.0.0.weight' else None
        hint = f' (a width-{width} HRNet: pass --backbone hrnet_{width})' if width in (32, 48) else ''
        raise UserError(f"backbone file '{path}' does not fit --backbone {name}: {key} is {found}, "
                        f"expected {expected}{hint}")
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f'missing {missing[0]}' if missing else f'unexpected {unexpected[0]}'
        example = os.path.basename(RELEASE_WEIGHT_FILES.get(name, RELEASE_WEIGHT_FILES['hrnet_32']))
        raise UserError(f"backbone file '{path}' is not a {name} state dict ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected keys; {detail}): pass the deep-high-resolution-net "
                        f"COCO file, e.g. {example}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)
    return backbone.eval()


def prepare_backbone(name: str, weights, seed: int = 0, trust: bool = False):
    """A frozen backbone with the weights of ``weights`` (a path, or 'random')."""
    backbone = build_backbone(name, seed)
    if weights == RANDOM_WEIGHTS:
        return backbone
    if not weights or not os.path.isfile(weights):
        raise UserError(f"backbone weights '{weights}' not found: download the COCO file of --backbone {name} "
                        f"(the release keeps it at {RELEASE_WEIGHT_FILES.get(name)}) and pass --backbone-weights "
                        f"FILE, or --backbone-weights random for a first run on the synthetic images")
    return load_backbone_weights(backbone, weights, name, trust)


def weights_fingerprint(module) -> str:
    """SHA-256 of every tensor (key, dtype, shape, values) of a module's state dict."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f'{key}:{value.dtype}:{tuple(value.shape)};'.encode())
        digest.update(value.numpy().tobytes() if value.dtype != torch.bfloat16 else value.float().numpy().tobytes())
    return digest.hexdigest()
