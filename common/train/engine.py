"""The training engine shared by every model and every run script.

``fit`` runs epochs of ``train_one_epoch`` and ``evaluate``, with checkpoints written
atomically (latest every epoch and optionally every N steps, best, every N epochs),
``--resume`` that continues bit-for-bit on CPU (also from a mid-epoch checkpoint), DDP
and DataParallel, bf16 autocast, gradient accumulation, a weight EMA, logs and a results
JSON. A non-finite loss stops training before anything is saved.
"""
import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from common.train.checkpoint import (atomic_save, load_checkpoint, make_checkpoint, read_checkpoint,
                                     remove_partial_files, unwrap)
from common.dist import (DistInfo, all_reduce_sum, barrier, broadcast_buffers, gather_objects, rng_state,
                         set_rng_state, seed_everything)
from common.errors import UserError
from common.progress import long_run_warning, progress
from common.eval.evaluation import EvalConfig, evaluate, export_results, format_results, write_results
from common.data.generators import EpochSampler, WindowDataset, collate_batch
from common.train.optim import WeightEMA, build_optimizer, epoch_lr
from common.data.pose_codec import unit_scale

PACE_STEPS = 3  # steps timed after the first (which pays for warm-up) to forecast a run's length
FINITE_CHECK_STEPS = 50  # how often (steps) the loss is checked for NaN/inf: one host sync each time


@dataclass
class TrainConfig:
    """epochs -- number of epochs; batch_size -- windows per optimisation step (global, over all
    ranks and accumulation micro-batches); lr / lr_decay -- initial rate and per-epoch factor;
    optimizer -- 'adamw' | 'adam' | 'adam_amsgrad' (None: the model's default); warmup_epochs --
    linear warm-up; clip_grad -- max gradient norm (None: off); amp -- bf16 autocast; ema -- EMA
    decay (None: off); accumulate -- micro-batches per step (each batch_size / world / accumulate
    windows); compile -- torch.compile the training step; workers -- DataLoader processes;
    checkpoint_dir -- where checkpoints go; checkpoint_frequency -- also keep epoch_N.pt every N
    epochs; checkpoint_steps -- write latest.pt every N steps too; resume -- checkpoint to continue
    from; trust_checkpoint -- read it with full unpickling; log_dir -- tensorboard, log file and
    results (None: no logs); max_steps_per_epoch -- cut epochs short (smoke tests).
    These defaults are the command line's too (common/cli/arguments.py reads them); epochs 0 trains
    nothing and evaluates the model as it is."""
    epochs: int = 60
    batch_size: int = 1024
    lr: float = 1e-3
    lr_decay: float = 0.95
    weight_decay: float = 0.0
    optimizer: Optional[str] = None
    warmup_epochs: int = 0
    clip_grad: Optional[float] = None
    amp: bool = False
    ema: Optional[float] = None
    accumulate: int = 1
    compile: bool = False
    workers: int = 0
    seed: int = 0
    checkpoint_dir: str = 'checkpoint'
    checkpoint_frequency: int = 0
    checkpoint_steps: int = 0
    resume: Optional[str] = None
    trust_checkpoint: bool = False
    log_dir: Optional[str] = None
    results_json: Optional[str] = None
    export_training_curves: bool = False
    data_parallel: List[int] = field(default_factory=list)
    max_steps_per_epoch: Optional[int] = None
    group_lrs: Dict[str, float] = field(default_factory=dict)


class TrainingObjective(nn.Module):
    """Model + loss in one module, so that DataParallel / DDP parallelise the loss too.
    forward(input2d [B,F,J,2], target3d [B,F,J,3], intrinsics [B,9], root_depth [B,F]) -> scalar
    loss; the camera inputs go to models that declare ``uses_camera`` (the refine module)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.scale = unit_scale(model)  # targets in the model's output unit (metres or mm)

    def forward(self, input2d, target3d, intrinsics=None, root_depth=None):
        if self.scale != 1.0:
            target3d = target3d * self.scale
            root_depth = None if root_depth is None else root_depth * self.scale
        camera = (intrinsics, root_depth) if self.model.uses_camera else ()
        return self.model.training_loss(input2d, target3d, *camera)


class Logger:
    """Rank-0 printing, a log file and tensorboardX scalars (all off when log_dir is None)."""

    def __init__(self, log_dir, info: DistInfo):
        self.info, self.log_dir, self.writer, self.file = info, log_dir, None, None
        if log_dir and info.is_main:
            try:
                os.makedirs(log_dir, exist_ok=True)
                self.file = open(os.path.join(log_dir, 'log.txt'), 'a')
            except OSError as err:
                raise UserError(f"cannot write the log directory '{log_dir}': {err.strerror}") from None
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(log_dir)

    def print(self, message):
        if self.info.is_main:
            print(message, flush=True)
            if self.file:
                self.file.write(message + '\n')
                self.file.flush()

    def scalar(self, name, value, step):
        if self.writer:
            self.writer.add_scalar(name, value, step)

    def close(self):
        if self.writer:
            self.writer.close()
        if self.file:
            self.file.close()


def make_loader(train_set, cfg: TrainConfig, info: DistInfo, device):
    """(DataLoader, EpochSampler, windows per rank and step). Workers are re-forked every epoch
    (not persistent) so that they see the epoch's flips; the order and contents of the windows
    never depend on the worker count."""
    per_rank_batch = max(1, cfg.batch_size // info.world_size)
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=per_rank_batch, sampler=sampler, collate_fn=collate_batch,
        num_workers=cfg.workers, pin_memory=device.type == 'cuda', persistent_workers=False,
        generator=torch.Generator().manual_seed(cfg.seed))
    return loader, sampler, per_rank_batch


def steps_per_epoch(num_windows, info: DistInfo, per_rank_batch, max_steps=None):
    steps = -(-(-(-num_windows // info.world_size)) // per_rank_batch)
    return min(steps, max_steps) if max_steps else steps


def train_one_epoch(objective, optimizer, loader, cfg: TrainConfig, device, epoch, info: DistInfo = DistInfo(),
                    ema=None, on_step=None, start_step=0, running=None, on_step_every=1, on_pace=None):
    """One pass over the loader (from step ``start_step``); returns the mean training loss over
    all ranks. Each batch is split into ``cfg.accumulate`` micro-batches whose losses are
    weighted by their share of the batch, so the step equals one over the whole batch.

    on_step(step, loss_sum, count) -- called after every ``on_step_every``-th optimiser step
    (mid-epoch checkpoints), once the losses so far are known to be finite;
    running -- (loss sum, window count) carried over from a mid-epoch checkpoint;
    on_pace(seconds per step) -- called once, after the steps that follow the (slower) first one."""
    objective.train()
    total = torch.tensor(running[0] if running else 0.0, dtype=torch.float64, device=device)
    count = torch.tensor(running[1] if running else 0.0, dtype=torch.float64, device=device)
    # first step whose loss was not finite (-1: none); kept on the device so the step has no sync
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    last_step = start_step + len(loader) if not cfg.max_steps_per_epoch else \
        min(start_step + len(loader), cfg.max_steps_per_epoch)
    bar = progress(loader, f'epoch {epoch + 1}', total=last_step, initial=start_step, enabled=info.is_main,
                   unit='step')
    paced_from = None
    bare = unwrap(objective).model if isinstance(unwrap(objective), TrainingObjective) else unwrap(objective)
    optimizer.zero_grad(set_to_none=True)
    names = ('input2d', 'target3d') + (('intrinsics', 'root_depth') if bare.uses_camera else ())
    for step, batch in enumerate(bar, start=start_step):
        tensors = [batch[name].to(device, non_blocking=True) for name in names]
        windows = len(tensors[0])
        parts = [i for i in zip(*(t.tensor_split(cfg.accumulate) for t in tensors)) if len(i[0])]
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        for index, (x, *rest) in enumerate(parts):
            # DDP averages gradients only on the last micro-batch of the step
            sync = index == len(parts) - 1 or not isinstance(objective, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else objective.no_sync():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    loss = objective(x, *rest).mean()
                (loss * (len(x) / windows)).backward()
            step_loss += loss.detach().double() * len(x)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(step_loss), step + 1, first_bad)
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(objective.parameters(), cfg.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(bare)
        total += step_loss
        count += windows
        call = on_step is not None and (step + 1) % on_step_every == 0
        if call or (step + 1) % FINITE_CHECK_STEPS == 0:
            check_finite(first_bad, epoch)
        if call:
            on_step(step + 1, total, count)
        if on_pace is not None:
            if paced_from is None:
                paced_from = (step, time.perf_counter())
            elif step - paced_from[0] == PACE_STEPS:
                on_pace((time.perf_counter() - paced_from[1]) / PACE_STEPS)
        if step + 1 >= last_step:
            break
    check_finite(first_bad, epoch)
    stats = all_reduce_sum(torch.stack([total, count]))
    return (stats[0] / stats[1].clamp(min=1)).item()


def check_finite(first_bad, epoch):
    """Stop (before anything is saved) if a loss of this epoch was NaN or inf."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        first_bad = first_bad.clone()
        torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MAX)
    step = int(first_bad)
    if step >= 0:
        raise UserError(f'non-finite training loss at epoch {epoch + 1}, step {step}; stopped without '
                        f'saving (lower the learning rate, or check the data for NaN/inf)')


def _prepare_checkpoint_dir(directory):
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, '.write-test')
        open(probe, 'w').close()
        os.remove(probe)
    except OSError as err:
        raise UserError(f"cannot write the checkpoint directory '{directory}': {err.strerror}") from None
    stale = remove_partial_files(directory)
    if stale:
        print(f'INFO: removed {len(stale)} unfinished checkpoint write(s) from {directory}')


def _read_resume_state(cfg: TrainConfig, model):
    state = read_checkpoint(cfg.resume, cfg.trust_checkpoint)
    if not (isinstance(state, dict) and state.get('optimizer') is not None and 'epoch' in state):
        raise UserError(f"'{cfg.resume}' is not a training checkpoint of this program (no optimizer "
                        f"state): evaluate it with --evaluate, or start a new run")
    load_checkpoint(model, state)  # one-line error listing mismatched keys and shapes
    return state


@dataclass
class RunState:
    """Where a training run stands: the next epoch and step, the best score, the history, the
    loss sums of a part-done epoch, and the RNG state to restore before it continues."""
    epoch: int = 0
    step: int = 0
    best: float = math.inf
    history: List[dict] = field(default_factory=list)
    running: Optional[list] = None
    rng: object = None


def _resume(cfg: TrainConfig, saved, optimizer, ema, info: DistInfo, logger) -> RunState:
    """The RunState (and optimiser and EMA state) of the checkpoint ``saved``; a fresh one if None."""
    if saved is None:
        return RunState()
    optimizer.load_state_dict(saved['optimizer'])
    if ema is not None and saved.get('ema_model') is not None:
        ema.model.load_state_dict(saved['ema_model'])
    rng = saved.get('rng')
    run = RunState(saved['epoch'], saved.get('step', 0), saved.get('best', math.inf), saved.get('history', []),
                   saved.get('running_loss') if info.is_main else None,
                   rng[info.rank % len(rng)] if isinstance(rng, list) else rng)
    if saved.get('world_size', 1) != info.world_size:
        logger.print(f"WARNING: {cfg.resume} was written by {saved.get('world_size', 1)} process(es), "
                     f"resuming with {info.world_size}: the run continues but not bit for bit")
    logger.print(f'INFO: resumed from {cfg.resume} at epoch {run.epoch + 1}, step {run.step}')
    return run


def _parallel_objective(model, cfg: TrainConfig, info: DistInfo, device):
    """TrainingObjective, wrapped for DDP (torchrun), DataParallel (-gpu 0,1) and torch.compile."""
    objective = TrainingObjective(model)
    if info.enabled:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=model.has_unused_parameters)
    elif len(cfg.data_parallel) > 1 and device.type == 'cuda':
        objective = nn.DataParallel(objective, device_ids=cfg.data_parallel)
    return torch.compile(objective) if cfg.compile else objective


def _log_epoch(logger, run: RunState, epoch, lr, train_loss, results, ema_results, seconds):
    """Record one epoch in the history, the log and tensorboard."""
    run.history.append({'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'test': results['score'],
                        'test_ema': ema_results['score'] if ema_results else None, 'seconds': seconds})
    logger.print(f"[{epoch + 1}] lr {lr:.6g}  train loss {train_loss:.5f}  test {results['score_name']} "
                 f"{results['score']:.2f}" + (f"  (EMA {ema_results['score']:.2f})" if ema_results else '')
                 + f"  {seconds:.1f}s")
    logger.scalar('train/loss', train_loss, epoch + 1)
    logger.scalar(f"test/{results['score_name']}", results['score'], epoch + 1)


def _save(cfg: TrainConfig, model, optimizer, run: RunState, ema, info: DistInfo, run_config, name, epoch, step,
          results=None, rng=None, running_loss=None):
    """Write checkpoint ``name`` (atomically) with everything a resumed run needs."""
    checkpoint = make_checkpoint(model, optimizer=optimizer.state_dict(), epoch=epoch, step=step, best=run.best,
                                 history=run.history, rng=rng, running_loss=running_loss, config=run_config,
                                 world_size=info.world_size, results=results,
                                 ema_model=ema.model.state_dict() if ema else None)
    atomic_save(checkpoint, os.path.join(cfg.checkpoint_dir, name))


def _save_epoch(save, run: RunState, epochs_done, results, rng, cfg: TrainConfig):
    """latest.pt after every epoch, best.pt when the score improved, epoch_N.pt every N epochs."""
    improved = results['score'] < run.best
    run.best = min(run.best, results['score'])
    save('latest.pt', epochs_done, 0, results, rng)
    if improved:
        save('best.pt', epochs_done, 0, results, rng)
    if cfg.checkpoint_frequency and epochs_done % cfg.checkpoint_frequency == 0:
        save(f'epoch_{epochs_done}.pt', epochs_done, 0, results, rng)


def _finish(results, predictions, history, test_sequences, spec, cfg: TrainConfig, run_config, logger):
    """Print the final table and write the results JSON, the protocol's exports and the curves."""
    logger.print(format_results(results))
    written = [n for n in ('latest.pt', 'best.pt', 'ema.pt') if os.path.isfile(os.path.join(cfg.checkpoint_dir, n))]
    saved = f"checkpoints in {cfg.checkpoint_dir}: {', '.join(written)}" if written else 'no checkpoint written'
    logger.print(f'INFO: {saved}' + (f'; log, tensorboard and results in {cfg.log_dir}' if cfg.log_dir else ''))
    export_results(results, test_sequences, predictions, spec, cfg.log_dir or cfg.checkpoint_dir)
    write_results(results, run_config, cfg.results_json, cfg.log_dir)
    if cfg.export_training_curves and history:
        from common.visualization import plot_training_curves
        plot_training_curves(history, os.path.join(cfg.log_dir or cfg.checkpoint_dir, 'training_curves.png'))


def fit(model, train_set: WindowDataset, test_sequences, spec, cfg: TrainConfig, eval_cfg: EvalConfig,
        device, info: DistInfo, run_config: dict):
    """Train ``model`` and evaluate it after every epoch; returns the last results dict."""
    saved = _read_resume_state(cfg, model) if cfg.resume else None  # before anything is written
    if info.is_main:
        _prepare_checkpoint_dir(cfg.checkpoint_dir)
    logger = Logger(cfg.log_dir, info)
    seed_everything(cfg.seed + info.rank)  # per-rank dropout; the weights are broadcast by DDP
    model.to(device)
    optimizer = build_optimizer(model, cfg)
    ema = WeightEMA(model, cfg.ema) if cfg.ema else None
    run = _resume(cfg, saved, optimizer, ema, info, logger)
    objective = _parallel_objective(model, cfg, info, device)
    if cfg.batch_size % (info.world_size * cfg.accumulate):
        logger.print(f'WARNING: batch size {cfg.batch_size} is not a multiple of {info.world_size} '
                     f'process(es) x {cfg.accumulate} micro-batches; micro-batches differ by one window')
    loader, sampler, per_rank_batch = make_loader(train_set, cfg, info, device)
    epoch_steps = steps_per_epoch(len(train_set), info, per_rank_batch, cfg.max_steps_per_epoch)

    save = functools.partial(_save, cfg, model, optimizer, run, ema, info, run_config)

    results = predictions = None
    for epoch in range(run.epoch, cfg.epochs):
        lr = epoch_lr(cfg, epoch)
        for group in optimizer.param_groups:
            group['lr'] = lr * group.get('lr_scale', 1.0)
        train_set.set_epoch(epoch)
        model.on_epoch_start(epoch, cfg.epochs)
        sampler.set_epoch(epoch, skip=run.step * per_rank_batch)
        if run.rng is not None:
            set_rng_state(run.rng, device)
            run.rng = None

        def on_step(step, total, count, epoch=epoch):
            if step < epoch_steps:  # the epoch's end saves anyway
                rng = gather_objects(rng_state(device), info)
                sums = all_reduce_sum(torch.stack([total, count])).tolist()
                if info.is_main:
                    save('latest.pt', epoch, step, rng=rng, running_loss=sums)

        def on_pace(seconds_per_step, epochs_left=cfg.epochs - epoch):
            warning = long_run_warning(seconds_per_step, epoch_steps, epochs_left, device.type,
                                       '; the cpu_<model> recipes (--recipe cpu_stmo, ...) are sized for CPU')
            if warning:
                logger.print(warning)

        t0 = time.time()
        train_loss = train_one_epoch(objective, optimizer, loader, cfg, device, epoch, info, ema,
                                     on_step if cfg.checkpoint_steps else None, run.step, run.running,
                                     on_step_every=cfg.checkpoint_steps or 1,
                                     on_pace=on_pace if epoch == run.epoch and info.is_main else None)
        run.step, run.running = 0, None
        rng = gather_objects(rng_state(device), info)
        for module in (model, ema.model if ema else None):
            if module is not None:
                broadcast_buffers(module, info)  # evaluate (sharded) and save rank 0's model
        results, predictions = evaluate(model, test_sequences, spec, eval_cfg, device, info,
                                        return_predictions=True)
        ema_results = evaluate(ema.model, test_sequences, spec, eval_cfg, device, info) if ema else None
        _log_epoch(logger, run, epoch, lr, train_loss, results, ema_results, time.time() - t0)
        if info.is_main:
            _save_epoch(save, run, epoch + 1, results, rng, cfg)
            if ema is not None:  # the EMA weights as a model of their own (--evaluate ema.pt)
                atomic_save(make_checkpoint(ema.model, epoch=epoch + 1, config=run_config, results=ema_results),
                            os.path.join(cfg.checkpoint_dir, 'ema.pt'))
        barrier(info)

    if results is None:  # nothing left to train (resumed a finished run)
        results, predictions = evaluate(model, test_sequences, spec, eval_cfg, device, info,
                                        return_predictions=True)
    if info.is_main:
        _finish(results, predictions, run.history, test_sequences, spec, cfg, run_config, logger)
    logger.close()
    return results
