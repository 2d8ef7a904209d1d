"""Glue between the parsed command line and the engine: configs, data, model, mode.

Run scripts call ``main(argv, preset)``; with common/cli/command_line.py this is the only code that
reads the argparse namespace, and it turns it into plain config objects at once.
"""
import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

from common import compat
from common.cli.arguments import build_parser
from common.cli.uplift_config import format_release_summary
from common.cli.uplift_release import apply_release_flags, given_dests
from common.cli.inference_flags import prepare_inference, reject_when_training
from common.cli.model_setup import build_lifter
from common.cli.wild_command import run_custom
from common.cli.command_line import (check_conflicts, checkpoint_to_evaluate, checkpoint_to_finetune,
                                     checkpoint_to_resume)
from common.data.datasets import DataConfig, load_dataset
from common.data.generators import WindowConfig, WindowDataset
from common.dist import DistInfo, cleanup, init_distributed, is_distributed_failure, select_device
from common.errors import UserError, exit_status
from common.eval.evaluation import EvalConfig, evaluate, export_results, format_results, write_results
from common.train.checkpoint import load_checkpoint


@dataclass(frozen=True)
class ScriptPreset:
    """What differs between run.py and run_3dhp.py: the name, the default dataset, the text,
    and dataset names that mean another reader in this script (-d synthetic -> its 3DHP variant);
    keypoints -- the default 2D source (-k) where it is not DataConfig's."""
    script: str
    dataset: str
    description: str
    dataset_aliases: tuple = ()
    keypoints: Optional[str] = None


def data_config(args, preset: ScriptPreset, test_only=False) -> DataConfig:
    actions = None if args.actions in (None, '*') else [a for a in args.actions.split(',') if a]
    dataset = dict(preset.dataset_aliases).get(args.dataset, args.dataset)
    return DataConfig(dataset=dataset, root_path=args.root_path, keypoints=args.keypoints,
                      subjects_train=args.subjects_train, subjects_test=args.subjects_test,
                      actions=actions, downsample=args.downsample, subset=args.subset, seed=args.seed,
                      virtual_cameras=args.virtual_cameras, test_only=test_only,
                      reader_options=dict(getattr(args, 'reader_options', None) or {}))


def window_config(args, model) -> WindowConfig:
    kind = 'seq2seq' if model.predicts == 'sequence' else 'seq2frame'
    return WindowConfig(kind=kind, frames=model.receptive_field, stride=args.stride, random_shift=args.random_shift,
                        tds=model.frame_step, flip=args.data_augmentation, seed=args.seed)


def load_refine(args, spec, device, model=None):
    """The refine module of --refine --refine_reload 1: --previous_refine_name FILE, or the
    first 'r*.pth' of a --previous_dir folder (Strided Transformer layout). None without
    --refine, or when ``model`` brings its own refiner (trained with --refine) and no file is named."""
    if not args.refine or (model is not None and model.evaluation_refiner() is not None and not args.refine_reload):
        return None
    path = compat.refine_file(args.previous_refine_name, args.previous_dir)
    if not (args.refine_reload and path):
        raise UserError('--refine at evaluation needs --refine_reload 1 and --previous_refine_name FILE')
    return compat.load_refiner(path, spec.num_joints, args.trust_checkpoint).to(device).eval()


def attach_refiner(args, lifter, spec, train_seqs):
    """--refine while training: (model, name, config) of the lifter as loaded and a refine
    module (fresh, or from --refine_reload 1 --previous_refine_name) trained together."""
    if any(seq.intrinsics is None or seq.trajectory is None for seq in train_seqs):
        raise UserError('--refine needs camera intrinsics and 3D ground truth for every training stream '
                        '(Human3.6M files have them)')
    model = compat.pair_with_refiner(lifter, load_refine(args, spec, 'cpu') if args.refine_reload else None)
    return model, 'refined', model.model_config


def eval_config(args, refine=None) -> EvalConfig:
    zero = {'auto': None, 'yes': True, 'no': False}[args.eval_zero_root]
    return EvalConfig(flip=args.test_time_augmentation, zero_root=zero, refine=refine)


def default_log_dir(args, name, preset: ScriptPreset):
    """-l DIR, or log/<script's dataset>[_<-d when another>]_<model>_<time> (so the Human3.6M and
    the 3DHP synthetic sets, both -d synthetic, log apart); None with --nolog."""
    if args.nolog:
        return None
    datasets = preset.dataset if args.dataset == preset.dataset else f'{preset.dataset}_{args.dataset}'
    return args.log or os.path.join('log', f"{datasets}_{name}_{time.strftime('%Y%m%d-%H%M%S')}")


def load_data(args, preset: ScriptPreset, test_only=False):
    """(train sequences, test sequences, DatasetSpec, DataConfig) for the parsed flags;
    ``test_only``: evaluation, no training streams are read."""
    data = data_config(args, preset, test_only)
    train_seqs, test_seqs, spec = load_dataset(data)
    if getattr(args, 'validation_data', None):  # --dataset_val: evaluation streams of another dataset
        test_seqs = load_dataset(args.validation_data)[1]
    return train_seqs, test_seqs, spec, data


def prepare_model(args, spec):
    """(model, name, config, checkpoint object or None, evaluation path or None).
    The model is built from the checkpoint's record when evaluating or fine-tuning (weights not
    yet loaded)."""
    evaluate_path = checkpoint_to_evaluate(args)
    source = evaluate_path or checkpoint_to_finetune(args)
    h5_options = getattr(args, 'uplift_h5_options', None)  # an .h5 file built from --config
    checkpoint = compat.read_model_file(source, args.trust_checkpoint, h5_options) if source else None
    model, name, model_config = build_lifter(args, spec, checkpoint)
    return model, name, model_config, checkpoint, evaluate_path


def load_model_for_inference(args, spec, device):
    """A model with weights loaded from the checkpoint the flags name, on ``device``, in eval
    mode."""
    model, _, _, checkpoint, path = prepare_model(args, spec)
    if path is None:
        raise UserError('no checkpoint given: use -c DIR --evaluate FILE (or --reload 1 --previous_dir FILE)')
    load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def evaluation_variants(model, forced=None):
    """(label, attribute settings) of each evaluation a model's paper reports (Uplift-and-Upsample:
    one per keyframe spacing s_in); [(None, {})] for a single evaluation."""
    variants = model.evaluation_variants()
    if forced is not None:
        variants = [v for v in variants if forced in v[1].values()]
        if not variants:
            raise UserError(f'--forced_mask_stride {forced} is not one of this model\'s keyframe spacings')
    return variants


def evaluate_checkpoint(args, model, test_seqs, spec, device, info, run_config, log_dir):
    """Evaluate a loaded model (once per evaluation variant), print, save JSON and exports."""
    cfg = eval_config(args, load_refine(args, spec, device, model))
    runs = {}
    for label, settings in evaluation_variants(model, args.mask_stride):
        model.use_evaluation_variant(settings)
        results, predictions = evaluate(model, test_seqs, spec, cfg, device, info, return_predictions=True)
        if info.is_main:
            print((f'== {label} ==\n' if label else '') + format_results(results))
        runs[label] = (results, predictions)
    if getattr(args, 'release_summary', None) and info.is_main:  # Uplift-and-Upsample's printout
        print(format_release_summary({k: r for k, (r, _) in runs.items()}, args.release_summary == 'action'))
    label, (results, predictions) = next(iter(runs.items()))
    if len(runs) > 1:
        results = {**results, 'variants': {name: r for name, (r, _) in runs.items()}}
        if info.is_main:
            print(' | '.join([results['score_name']] + list(runs)))
            print(' | '.join([run_config['model']] + [f"{r['score']:.1f}" for r, _ in runs.values()]))
    if info.is_main:
        write_results(results, run_config, args.results_json, log_dir)
        # protocol files (3DHP CSV and .mat) go next to the results, not over another run's
        beside = os.path.dirname(os.path.abspath(args.results_json)) if args.results_json else args.checkpoint
        export_results(results, test_seqs, predictions, spec, log_dir or beside)
    return results


def run(args, preset: ScriptPreset, info: DistInfo):
    from common.dist import configure_determinism, seed_everything
    if args.render or args.dataset == 'custom' or args.input_keypoints:  # one's own video (VideoPose3D's form)
        return run_custom(args)
    check_conflicts(args)
    from common.data.h36m_toolbox import IMAGE_DATASETS
    if args.dataset in IMAGE_DATASETS:  # models that lift from image features: their own glue
        from common.cli.image_runner import run_images
        return run_images(args, preset, info)
    if args.model:
        from common.cli.image_runner import refuse_without_images
        refuse_without_images(args.model, args.dataset)  # before any keypoint file is read
    device = select_device(args.gpu, info)
    configure_determinism(args.deterministic)
    seed_everything(args.seed)  # the initial weights follow --seed (the same on every rank)
    train_seqs, test_seqs, spec, data = load_data(args, preset, test_only=checkpoint_to_evaluate(args) is not None)
    model, name, model_config, checkpoint, evaluate_path = prepare_model(args, spec)
    if model.in_features != 2:
        raise UserError(f'this {name} model takes {model.in_features} channels per joint (x, y and the detector\'s '
                        f'confidence); the datasets\' 2D has x, y: lift a video with it instead '
                        f'(render.py --input-keypoints FILE)')
    if 'image_features' in model.inputs:
        raise UserError(f'{name} needs an image dataset: it lifts from the feature maps of an image backbone and '
                        f'-d {args.dataset} has no images; use -d h36m_toolbox --root_path DIR (H36M-Toolbox labels '
                        f'and images) or -d synthetic_images')
    run_config = {'script': preset.script, 'model': name, 'model_config': model_config, 'tds': model.frame_step,
                  'data': asdict(data), 'argv': sys.argv[1:]}
    if info.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(f'INFO: model {name} ({params / 1e6:.2f}M parameters, receptive field {model.receptive_field}, '
              f'predicts {model.predicts}); {len(train_seqs)} training / {len(test_seqs)} test streams')

    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        if evaluate_path:
            model.to(device)
            run_config['checkpoint'] = evaluate_path
            model, exported = prepare_inference(args, model, run_config)
            return None if exported else evaluate_checkpoint(args, model, test_seqs, spec, device, info, run_config,
                                                             default_log_dir(args, name, preset))  # results.json there
        if info.is_main:
            print(f'INFO: training starts from {checkpoint_to_finetune(args)}')

    reject_when_training(args)
    if args.MAE_reload:
        copied = compat.transfer_stage_one(model, args.previous_dir, args.trust_checkpoint)
        if info.is_main:
            print(f'INFO: copied {len(copied)} tensors from stage I checkpoint {args.previous_dir}')

    if args.refine:
        model, name, model_config = attach_refiner(args, model, spec, train_seqs)
        run_config.update(model=name, model_config=model_config)
    from common.train.engine import TrainConfig, fit
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        weight_decay=args.weight_decay, optimizer=args.optimizer,
        warmup_epochs=args.warmup, clip_grad=args.clip_grad, amp=args.amp, ema=args.ema,
        accumulate=args.accumulate, compile=args.compile, workers=args.workers, seed=args.seed,
        checkpoint_dir=args.checkpoint, checkpoint_frequency=args.checkpoint_frequency,
        checkpoint_steps=args.checkpoint_steps, resume=checkpoint_to_resume(args),
        trust_checkpoint=args.trust_checkpoint,
        log_dir=default_log_dir(args, name, preset),
        results_json=args.results_json, export_training_curves=args.export_training_curves,
        data_parallel=args.gpu or [], max_steps_per_epoch=args.max_steps_per_epoch,
        group_lrs={'refiner.': args.lr_refine} if args.refine and args.lr_refine else {})
    if not train_seqs:
        raise UserError('no training streams: check -str / -a / --subset')
    windows = spec.window_dataset or WindowDataset
    train_set = windows(train_seqs, window_config(args, model), spec.flip_pairs, spec.skeleton.flip_pairs,
                        causal_shift=model.causal_shift)
    return fit(model, train_set, test_seqs, spec, train_cfg, eval_config(args), device, info, run_config)


def main(argv, preset: ScriptPreset):
    """Parse, run, and turn every user error into one line and exit status 2."""
    parser = build_parser(preset.script, preset.description, preset.dataset)
    if preset.keypoints:
        parser.set_defaults(keypoints=preset.keypoints)
    args = parser.parse_args(argv)
    given = given_dests(parser, sys.argv[1:] if argv is None else argv)
    info = DistInfo()

    def start():
        nonlocal info
        info = init_distributed(args.ddp_timeout)
        # only rank 0 talks to the user; errors (stderr) still come from any rank
        with contextlib.ExitStack() as stack:
            if not info.is_main:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, 'w'))))
            run(apply_release_flags(args, given), preset, info)

    def collective_failed(err):  # another rank died or hung
        if not is_distributed_failure(err):
            return None
        detail = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        print(f'error: rank {info.rank}: distributed training failed, another process died or timed out '
              f'(--ddp-timeout {args.ddp_timeout:g} s): {detail}', file=sys.stderr)
        return 1

    try:
        return exit_status(start, collective_failed)
    finally:
        cleanup(info)
