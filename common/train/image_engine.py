"""Training of the models that lift from the feature maps of a frozen image backbone
(Context-Aware PoseFormer), from the images or from a feature cache.

As the release: AdamW on the head's parameters only, the learning rate multiplied by
``lr_decay`` after every epoch, the whole batch mirrored with probability 1/2 (images or
cached mirrored maps, 2D inputs and 3D target alike), MPJPE of root-relative metres, evaluation
after every epoch and the best checkpoint kept by validation MPJPE (P1). The draws of the flip
come from (seed, epoch), so they do not depend on workers or ranks. Checkpoints are ours and
hold the complete network (backbone and head), so they evaluate from images alone.
"""
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from common.data.generators import EpochSampler
from common.dist import DistInfo, all_reduce_sum, barrier
from common.errors import UserError
from common.eval.evaluation import EvalConfig, format_results, write_results
from common.eval.image_evaluation import ViewMaker, predict_images, score_images, user_error_from_worker
from common.eval.metrics import mpjpe
from common.train.checkpoint import atomic_save, make_checkpoint
from common.train.engine import Logger, TrainConfig, _prepare_checkpoint_dir
from common.train.optim import build_optimizer, epoch_lr


class HeadObjective(nn.Module):
    """The head and its loss in one module, so that DDP synchronises its gradients.
    forward(keypoints_2d [B, J, 2], crop_pixels [B, J, 2], target [B, 1, J, 3], *maps) -> MPJPE."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, keypoints_2d, crop_pixels, target, *features):
        from models.context_pose import ref_from_crop_pixels
        return mpjpe(self.head(keypoints_2d, ref_from_crop_pixels(crop_pixels), list(features)), target)


@dataclass
class ImageRun:
    """What an image-model run reads: the training and test datasets (images or cache), the test
    label table, whether the datasets hold cached maps."""
    train_set: torch.utils.data.Dataset
    test_set: torch.utils.data.Dataset
    test_table: object
    cached: bool


def collate(batch):
    """Samples -> batch; maps lists (cached levels) stack level by level."""
    first = batch[0][0]
    maps = [torch.stack([b[0][level] for b in batch]) for level in range(len(first))] \
        if isinstance(first, list) else torch.stack([b[0] for b in batch])
    rest = [torch.stack([b[i] for b in batch]) for i in (1, 2, 3)]
    return (maps, *rest, torch.tensor([b[4] for b in batch]))


def make_loader(dataset, batch_size, workers, info: DistInfo, seed=0, shuffle=True):
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle, rank=info.rank, world_size=info.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, persistent_workers=False)
    return loader, sampler


def flip_draws(seed, epoch, steps):
    """Which training steps of an epoch see the mirrored batch (probability 1/2)."""
    return np.random.default_rng([seed, epoch, 7]).random(steps) < 0.5


def evaluate_run(network, run: ImageRun, spec, eval_cfg: EvalConfig, batch_size, workers, device, info):
    """Results dict of the network on the run's test set."""
    loader, _ = make_loader(run.test_set, batch_size, workers, info, shuffle=False)
    views = ViewMaker(network, run.cached, device)
    predictions = predict_images(network, loader, views, eval_cfg.flip, info)
    return score_images(run.test_table, predictions, spec, eval_cfg.flip)


def train_epoch(objective, optimizer, loader, views, flips, cfg: TrainConfig, info: DistInfo, epoch):
    """One pass; returns the mean training loss (metres) over all ranks."""
    total = torch.zeros(2, dtype=torch.float64)
    steps = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    bar = tqdm(total=steps, desc=f'epoch {epoch + 1}', unit='batch', leave=False,
               disable=None if info.is_main else True)   # None: off when not a terminal
    try:
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            keypoints_2d, crop, features, target = views(batch, mirrored=bool(flips[step]))
            loss = objective(keypoints_2d, crop, target, *features)
            if not torch.isfinite(loss):
                raise UserError(f'non-finite training loss at epoch {epoch + 1}, step {step}; stopped without '
                                f'saving (lower the learning rate, or check the data for NaN/inf)')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.clip_grad)
            optimizer.step()
            total += torch.tensor([loss.item() * len(target), len(target)], dtype=torch.float64)
            bar.update(1)
            bar.set_postfix(loss=f'{loss.item() * 1000:.1f}mm')
    except UserError as err:
        raise user_error_from_worker(err) from None
    finally:
        bar.close()
    total = all_reduce_sum(total)
    return float(total[0] / max(1.0, float(total[1])))


def fit_images(network, run: ImageRun, spec, cfg: TrainConfig, eval_cfg: EvalConfig, device, info: DistInfo,
               run_config: dict):
    """Train the network's head; evaluate after every epoch; returns the last results dict."""
    if info.is_main:
        _prepare_checkpoint_dir(cfg.checkpoint_dir)
    logger = Logger(cfg.log_dir, info)
    network.to(device)
    head = network.volume_net
    optimizer = build_optimizer(head, cfg)
    objective = HeadObjective(head)
    if info.enabled:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == 'cuda' else None)
    per_rank = max(1, cfg.batch_size // info.world_size)
    loader, sampler = make_loader(run.train_set, per_rank, cfg.workers, info, cfg.seed)
    views = ViewMaker(network, run.cached, device)
    best, results, history = float('inf'), None, []
    for epoch in range(cfg.epochs):
        lr = epoch_lr(cfg, epoch)
        for group in optimizer.param_groups:
            group['lr'] = lr
        sampler.set_epoch(epoch)
        network.train()
        started = time.time()
        train_loss = train_epoch(objective, optimizer, loader, views, flip_draws(cfg.seed, epoch, len(loader)),
                                 cfg, info, epoch)
        results = evaluate_run(network, run, spec, eval_cfg, per_rank, cfg.workers, device, info)
        seconds = time.time() - started
        history.append({'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'test': results['mpjpe'],
                        'seconds': seconds})
        logger.print(f"[Epoch {epoch + 1}] lr {lr:.6g} | train-loss {train_loss * 1000:.3f} mm | "
                     f"val-p1 {results['mpjpe']:.1f} | val-p2 {results['p_mpjpe']:.1f} | {seconds:.1f}s")
        logger.scalar('train/loss', train_loss, epoch + 1)
        logger.scalar('test/MPJPE', results['mpjpe'], epoch + 1)
        if info.is_main:
            checkpoint = make_checkpoint(network, optimizer=optimizer.state_dict(), epoch=epoch + 1, lr=lr,
                                         history=history, config=run_config, results=results)
            atomic_save(checkpoint, os.path.join(cfg.checkpoint_dir, 'latest.pt'))
            if results['mpjpe'] < best:
                best = results['mpjpe']
                atomic_save(checkpoint, os.path.join(cfg.checkpoint_dir, 'best.pt'))
        barrier(info)
    if results is None:
        results = evaluate_run(network, run, spec, eval_cfg, per_rank, cfg.workers, device, info)
    results['history'] = history
    if info.is_main:
        logger.print(format_results(results))
        written = [n for n in ('latest.pt', 'best.pt') if os.path.isfile(os.path.join(cfg.checkpoint_dir, n))]
        if written and cfg.epochs:
            logger.print(f"INFO: checkpoints in {cfg.checkpoint_dir}: {', '.join(written)} (best.pt: best P1)"
                         + (f'; log and results in {cfg.log_dir}' if cfg.log_dir else ''))
        write_results(results, run_config, cfg.results_json, cfg.log_dir)
    logger.close()
    return results
