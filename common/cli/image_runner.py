"""Glue between the command line and the image-model engine (Context-Aware PoseFormer on
H36M-Toolbox images): data files, the network (head + frozen backbone with its weights), the
feature cache, then training or evaluation. Called by common/cli/runner.py for the image
datasets; nothing below it sees the namespace."""
import os
import sys
import time
from dataclasses import asdict

from common import compat
from common.cli.command_line import checkpoint_to_evaluate
from common.data.feature_cache import CachedFeatures, build_cache, check_meta, labels_identity, read_meta
from common.data.h36m_toolbox import (IMAGE_DATASETS, LABEL_FILES, SPEC, ImageDataConfig, ToolboxImages, keypoint_source,
                                      read_labels)
from common.data.synthetic_images import ensure_synthetic_images
from common.dist import DistInfo, barrier, seed_everything, select_device
from common.errors import UserError
from common.eval.evaluation import EvalConfig, format_results, write_results
from common.train.backbone_weights import RELEASE_WEIGHT_FILES, build_backbone, prepare_backbone, weights_fingerprint
from common.train.checkpoint import load_checkpoint, split_checkpoint
from common.train.engine import TrainConfig
from common.train.image_engine import ImageRun, evaluate_run, fit_images, make_loader

DEFAULT_BACKBONE = 'hrnet_32'
IMAGE_MODELS = ('context_pose',)   # registry names of the models that lift from image features


def resolve_files(config: ImageDataConfig):
    """(image root, train label file, test label file) a config means; the synthetic images
    are written on first use."""
    root = config.root_path
    if config.dataset == 'synthetic_images':
        root = ensure_synthetic_images(os.path.join(config.root_path, 'synthetic_images'))
    elif config.dataset not in IMAGE_DATASETS:
        raise UserError(f"-d {config.dataset} is not an image dataset ({', '.join(IMAGE_DATASETS)})")
    return (config.image_root or os.path.join(root, 'images'),
            config.train_labels or os.path.join(root, LABEL_FILES['train']),
            config.test_labels or os.path.join(root, LABEL_FILES['test']))


def refuse_without_images(model: str, dataset: str):
    """One line for an image model asked to run on a keypoint dataset."""
    from models import get_entry
    try:
        name = get_entry(model).name
    except KeyError:
        return   # the runner reports unknown names
    if name in IMAGE_MODELS:
        raise UserError(f'{name} needs an image dataset: it lifts from the feature maps of an image backbone and '
                        f'-d {dataset} has no images; use -d h36m_toolbox --root_path DIR (H36M-Toolbox labels '
                        f'and images) or -d synthetic_images')


def image_data_config(args) -> ImageDataConfig:
    return ImageDataConfig(dataset=args.dataset, root_path=args.root_path, image_root=args.image_root,
                           train_labels=args.train_labels, test_labels=args.test_labels,
                           keypoints=keypoint_source(args.keypoints))


def head_config(backbone: str, embed_dim=None, dropout=None) -> dict:
    """The head's constructor keywords for a fresh network on ``backbone``."""
    from models.hrnet import PRESETS
    config = {'backbone': 'hrnet_32', 'base_dim': PRESETS[backbone]['width']} if backbone in PRESETS \
        else {'backbone': backbone}
    if embed_dim:
        config['embed_dim_ratio'] = embed_dim
    if dropout is not None:
        config['dropout'] = dropout
    return config


def log_directory(args):
    """-l DIR (the release's --logdir), else log/<dataset>_context_pose_<time>; None with --nolog."""
    if args.nolog:
        return None
    return args.log or os.path.join('log', f"{args.dataset}_context_pose_{time.strftime('%Y%m%d-%H%M%S')}")


def info_is_main() -> bool:
    return os.environ.get('RANK', '0') == '0'


def _backbone_of(state_dict) -> str:
    """The backbone a complete official network holds: CPN, or the HRNet of its first branch's width."""
    if 'backbone.global_net.laterals.0.0.weight' in state_dict:
        return 'cpn'
    first = state_dict.get('backbone.transition1.0.0.weight')
    return f'hrnet_{first.shape[0]}' if first is not None and first.shape[0] in (32, 48) else DEFAULT_BACKBONE


def build_network(args, checkpoint=None):
    """(network, backbone name): from the checkpoint when evaluating one (ours: its record;
    the release's best_epoch.bin: recognised by its keys, backbone from --backbone or its keys), else from
    the flags with the backbone's COCO weights."""
    from models import build_model
    from models.context_pose import ContextPoseNetwork
    if checkpoint is not None:
        name, config = compat.model_spec_from_checkpoint(checkpoint)
        stored = config.pop('image_backbone', None)
        if stored and args.backbone and args.backbone != stored:
            raise UserError(f'--backbone {args.backbone}, but the checkpoint holds a {stored} network: drop --backbone')
        backbone_name = stored or args.backbone or _backbone_of(split_checkpoint(checkpoint)[0])
        if name != 'context_pose':
            raise UserError(f'the checkpoint holds {name}, which lifts keypoints: evaluate it on a keypoint dataset')
        network = ContextPoseNetwork(build_backbone(backbone_name), build_model(name, **config), backbone_name)
        return load_checkpoint(network, checkpoint), backbone_name
    backbone_name = args.backbone or DEFAULT_BACKBONE
    weights = args.backbone_weights or RELEASE_WEIGHT_FILES.get(backbone_name)
    backbone = prepare_backbone(backbone_name, weights, args.seed, args.trust_checkpoint)
    if weights == 'random' and args.dataset != 'synthetic_images' and info_is_main():
        print(f'WARNING: --backbone-weights random on -d {args.dataset}: the features mean nothing (pass the COCO '
              f'file of --backbone {backbone_name} for real training)')
    head = build_model('context_pose', **head_config(backbone_name, args.embed_dim, args.dropout))
    return ContextPoseNetwork(backbone, head, backbone_name), backbone_name


def cached_split(args, split, table, image_root, network, backbone_name, views, device, info):
    """The split's samples with their maps from the feature cache, built first where missing."""
    directory = os.path.join(args.feature_cache, split)
    identity, fingerprint = labels_identity(table), weights_fingerprint(network.backbone)
    meta = read_meta(directory)
    if meta is None:
        if info.is_main:
            def extract(crops, mirrored):
                images = network.normalise(crops.to(device))
                return network.features(images.flip(2) if mirrored else images)
            loader, _ = make_loader(ToolboxImages(table, image_root), args.batch_size, args.workers, DistInfo(),
                                    shuffle=False)
            print(f'INFO: caching the {backbone_name} maps of {len(table)} {split} images ({views} view(s), '
                  f'{args.cache_dtype}) in {directory}', flush=True)
            try:
                build_cache(directory, loader, extract, fingerprint, identity, backbone_name, views, args.cache_dtype,
                            f'cache {split}')
            except UserError as err:
                from common.eval.image_evaluation import user_error_from_worker
                raise user_error_from_worker(err) from None
        barrier(info)
        meta = read_meta(directory)
    check_meta(meta, directory, fingerprint, identity, views)
    return CachedFeatures(directory, table, meta)


def run_images(args, preset, info: DistInfo):
    """Train or evaluate an image model as the flags say; returns the results dict (None with
    --cache-only)."""
    if args.resume or args.reload or args.MAE_reload or args.refine:
        raise UserError('--resume / --reload / --MAE_reload / --refine do not apply to image models: train anew '
                        'or evaluate with --evaluate FILE (or --eval)')
    unused = [flag for flag, value in (('--amp', args.amp), ('--ema', args.ema), ('--compile', args.compile),
                                       ('--accumulate', args.accumulate != 1)) if value]
    if unused:
        raise UserError(f"{', '.join(unused)}: not available for image models yet; drop "
                        f"{'them' if len(unused) > 1 else 'it'}")
    device = select_device(args.gpu, info)
    seed_everything(args.seed)   # the initial head weights follow --seed
    data = image_data_config(args)
    image_root, train_labels, test_labels = resolve_files(data)
    evaluate_path = checkpoint_to_evaluate(args)
    checkpoint = compat.read_model_file(evaluate_path, args.trust_checkpoint) if evaluate_path else None
    network, backbone_name = build_network(args, checkpoint)
    network.to(device)
    test_table = read_labels(test_labels, data.keypoints)
    train_table = None if evaluate_path else read_labels(train_labels, data.keypoints)
    if info.is_main:
        params = sum(p.numel() for p in network.volume_net.parameters())
        print(f'INFO: model context_pose ({params / 1e6:.2f}M head parameters) on a frozen {backbone_name}; '
              f'{len(train_table) if train_table else 0} training / {len(test_table)} test images')
    cached = args.feature_cache is not None
    if cached:
        views = 2 if (args.data_augmentation or args.test_time_augmentation) else 1
        test_set = cached_split(args, 'test', test_table, image_root, network, backbone_name, views, device, info)
        train_set = cached_split(args, 'train', train_table, image_root, network, backbone_name, views, device,
                                 info) if train_table else None
        if args.cache_only:
            return None
    elif args.cache_only:
        raise UserError('--cache-only needs --feature-cache DIR')
    else:
        test_set = ToolboxImages(test_table, image_root)
        train_set = ToolboxImages(train_table, image_root) if train_table else None
    run = ImageRun(train_set, test_set, test_table, cached)
    eval_cfg = EvalConfig(flip=args.test_time_augmentation)
    run_config = {'script': preset.script, 'model': 'context_pose', 'model_config': network.model_config,
                  'data': asdict(data), 'feature_cache': args.feature_cache, 'argv': sys.argv[1:]}
    if evaluate_path:
        results = evaluate_run(network, run, SPEC, eval_cfg, args.batch_size, args.workers, device, info)
        if info.is_main:
            print(format_results(results))
            write_results(results, {**run_config, 'checkpoint': evaluate_path}, args.results_json,
                          log_directory(args))
        return results
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        weight_decay=args.weight_decay, optimizer=args.optimizer, warmup_epochs=args.warmup, clip_grad=args.clip_grad,
        workers=args.workers,
        seed=args.seed, checkpoint_dir=args.checkpoint, log_dir=log_directory(args),
        results_json=args.results_json, max_steps_per_epoch=args.max_steps_per_epoch)
    return fit_images(network, run, SPEC, train_cfg, eval_cfg, device, info, run_config)
