"""Context-Aware PoseFormer throughput: backbone feature extraction, and training steps of the
head from the images (decode, crop, frozen backbone, head) vs from the feature cache, measured
in the same run on the same synthetic H36M-Toolbox images.

    python -m bench.bench_context_pose                         # HRNet-W32 + published head (128)
    python -m bench.bench_context_pose --small                 # hrnet_tiny + a 16-wide head (CPU)
    python -m bench.bench_context_pose --device cuda --batch 64 --json out.json

Weights are random (the throughput does not depend on them). The cache is built once first
(float16, plain and mirrored views, as training uses it); its build time is reported too.
"""
import argparse
import json
import os
import tempfile
import time

import torch

from common.cli.image_runner import head_config
from common.data.feature_cache import CachedFeatures, build_cache, labels_identity
from common.data.h36m_toolbox import ToolboxImages, read_labels
from common.data.synthetic_images import ensure_synthetic_images
from common.dist import DistInfo
from common.eval.image_evaluation import ViewMaker
from common.train.backbone_weights import build_backbone, weights_fingerprint
from common.train.image_engine import HeadObjective, make_loader
from models import build_model
from models.context_pose import ContextPoseNetwork
from models.hrnet import PRESETS


def synchronise(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def extraction_rate(network, loader, device, batches):
    """Images per second of normalisation + backbone forward on decoded crops."""
    crops = [batch[0].to(device) for _, batch in zip(range(batches), loader)]
    network.features(network.normalise(crops[0]))   # warm-up
    synchronise(device)
    started = time.perf_counter()
    for batch in crops:
        network.features(network.normalise(batch))
    synchronise(device)
    return sum(len(b) for b in crops) / (time.perf_counter() - started)


def step_rate(network, loader, cached, device, steps):
    """Optimiser steps per second of the head, data loading included."""
    objective = HeadObjective(network.volume_net)
    optimizer = torch.optim.AdamW(network.volume_net.parameters(), lr=1e-4, weight_decay=0.1)
    views = ViewMaker(network, cached, device)
    network.train()
    iterator, done, started = iter(loader), -1, None
    while done < steps:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        keypoints_2d, crop, features, target = views(batch, mirrored=done % 2 == 0)
        loss = objective(keypoints_2d, crop, target, *features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == 0:   # the first step warms up
            synchronise(device)
            started = time.perf_counter()
    synchronise(device)
    return steps / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--small', action='store_true', help='hrnet_tiny backbone and a 16-wide head (CPU)')
    parser.add_argument('--backbone', default=None, choices=['cpn', *PRESETS],
                        help='default: hrnet_32 (tiny with --small)')
    parser.add_argument('--batch', type=int, default=16, help='images per batch (default: 16)')
    parser.add_argument('--steps', type=int, default=6, help='timed head steps per source (default: 6)')
    parser.add_argument('--workers', type=int, default=2, help='DataLoader workers decoding images (default: 2)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: cpu)')
    parser.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument('--data', default=None, help='folder for the synthetic images (default: a temporary one)')
    parser.add_argument('--frames', type=int, default=16,
                        help='frames per synthetic stream (12 streams; default: 16, 192 images)')
    parser.add_argument('--json', default=None, help='also write the numbers to this JSON file')
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone_name = args.backbone or ('hrnet_tiny' if args.small else 'hrnet_32')
    head = build_model('context_pose', **head_config(backbone_name, 16 if args.small else 128))
    network = ContextPoseNetwork(build_backbone(backbone_name), head, backbone_name).to(device)

    with tempfile.TemporaryDirectory() as scratch:
        root = ensure_synthetic_images(args.data or os.path.join(scratch, 'images'), frames=(args.frames, 2))
        table = read_labels(os.path.join(root, 'h36m_train.pkl'))
        images = ToolboxImages(table, os.path.join(root, 'images'))
        loader, _ = make_loader(images, args.batch, args.workers, DistInfo(), shuffle=False)
        per_second = extraction_rate(network, loader, device, batches=max(2, args.steps // 2))

        def extract(crops, mirrored):
            batch = network.normalise(crops.to(device))
            return network.features(batch.flip(2) if mirrored else batch)
        started = time.perf_counter()
        meta = build_cache(os.path.join(scratch, 'cache'), loader, extract, weights_fingerprint(network.backbone),
                           labels_identity(table), backbone_name, views=2, dtype='float16')
        cache_seconds = time.perf_counter() - started
        cached, _ = make_loader(CachedFeatures(os.path.join(scratch, 'cache'), table, meta), args.batch,
                                args.workers, DistInfo(), seed=1)
        from_images, _ = make_loader(images, args.batch, args.workers, DistInfo(), seed=1)
        image_steps = step_rate(network, from_images, False, device, args.steps)
        cache_steps = step_rate(network, cached, True, device, args.steps)

    head_params = sum(p.numel() for p in head.parameters())
    rows = [('backbone feature extraction', f'{per_second:.1f} images/s'),
            (f'cache build ({len(table)} images x 2 views)', f'{cache_seconds:.1f} s'),
            ('head training from images', f'{image_steps:.2f} steps/s ({image_steps * args.batch:.0f} images/s)'),
            ('head training from the cache', f'{cache_steps:.2f} steps/s ({cache_steps * args.batch:.0f} images/s)'),
            ('cache / images', f'{cache_steps / image_steps:.1f}x')]
    print(f'Context-Aware PoseFormer: backbone {backbone_name}, head {head_params / 1e6:.2f}M parameters, '
          f'batch {args.batch}, device {device}, {torch.get_num_threads()} threads')
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f'  {name:<{width}}  {value}')
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'backbone': backbone_name, 'batch': args.batch, 'device': str(device),
                       'extraction_images_per_s': per_second, 'cache_build_s': cache_seconds,
                       'head_steps_per_s_images': image_steps, 'head_steps_per_s_cache': cache_steps,
                       'ratio': cache_steps / image_steps}, handle, indent=2)


if __name__ == '__main__':
    main()
