"""Optimiser, learning-rate schedule and weight EMA of the training engine.

``cfg`` is the engine's TrainConfig (lr, lr_decay, warmup_epochs, weight_decay, optimizer,
group_lrs); parameter groups carry an ``lr_scale`` that the per-epoch rate is multiplied by.
"""
import copy

import torch

from common.train.checkpoint import unwrap
from common.errors import UserError


class WeightEMA:
    """Exponential moving average of a model's weights, kept as its own model:
    ema <- decay * ema + (1 - decay) * live after every optimiser step; buffers (BatchNorm
    statistics, counters) are copied as they are."""

    def __init__(self, model, decay):
        if not 0.0 <= decay < 1.0:
            raise UserError(f'--ema decay must be in [0, 1), got {decay}')
        self.decay = decay
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        live = unwrap(model).state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(live[name].to(value.dtype), 1 - self.decay)
            else:
                value.copy_(live[name])


def parameter_groups(model, cfg):
    """Trainable parameters grouped by ``cfg.group_lrs`` prefixes (the rest in the first group);
    each group's ``lr_scale`` is its initial lr over ``cfg.lr``."""
    groups = {prefix: [] for prefix in [''] + list(cfg.group_lrs)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[next((p for p in cfg.group_lrs if name.startswith(p)), '')].append(param)
    return [{'params': params, 'lr_scale': cfg.group_lrs.get(prefix, cfg.lr) / cfg.lr}
            for prefix, params in groups.items() if params]


def build_optimizer(model, cfg):
    name = cfg.optimizer or model.default_optimizer
    params = parameter_groups(model, cfg)
    if name == 'adamw':
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name in ('adam', 'adam_amsgrad'):
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=name == 'adam_amsgrad')
    raise UserError(f"unknown optimizer '{name}' (adamw, adam, adam_amsgrad)")


def epoch_lr(cfg, epoch: int) -> float:
    """Learning rate of an epoch: linear warm-up, then decay by lr_decay per epoch."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / cfg.warmup_epochs
    return cfg.lr * cfg.lr_decay ** (epoch - cfg.warmup_epochs)
