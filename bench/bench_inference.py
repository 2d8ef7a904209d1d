"""Inference speed of every seed model at its paper configuration, per backend and precision,
next to the official implementation holding the same weights, timed in the same process.

    python -m bench.bench_inference --small                         # tiny widths, a quick check
    python -m bench.bench_inference --official poseretnet=DIR --official pstmo=DIR \\
        --official strided=DIR --official videopose=DIR              # paper sizes, releases side by side
    python -m bench.bench_inference --device cuda --backends eager,compile,onnxruntime

For each model: frames/s at batch 1 and at a large batch (the window forward; a centre-frame
model gives one frame per window) for ours in eager fp32 on ATen's kernels (the lifter itself), on
oneDNN's (what evaluation runs on a CPU), each chosen backend / precision and
the release's code (given with --official RELEASE=DIR: poseretnet covers PoseRetNet, MixSTE and
STCFormer, pstmo P-STMO, strided the Strided Transformer, videopose VideoPose3D). Every variant
is timed interleaved with the others (best of --repeats rounds: load changes of a shared machine
hit all alike). Beside each number: the speed-up over the release and the accuracy change, the
mean per-joint distance to the lifter's own output in mm (an upper bound of the change of MPJPE).
"""
import argparse
import sys
import time
from types import SimpleNamespace

import torch

from common.eval.backends import InferenceConfig, accelerate, example_inputs
from models import build_model

PAPER = {
    'retnet': dict(num_frame=243, embed_dim=512, depth=8, chunk_size=243),
    'mixste': dict(num_frame=243, embed_dim=512, depth=8),
    'stc': dict(num_frame=243, embed_dim=256, depth=6),
    'stmo': dict(num_frame=243, layers=3, channel=256, d_hid=512),           # P-STMO-S
    'aptpose': dict(num_frame=243, layers=8, channel=256, d_hid=512),        # APTPose-8
    'strided': dict(num_frame=351, layers=3, channel=256, d_hid=512),
    'uplift_upsample': dict(preset='h36m_351'),
    'videopose': dict(filter_widths=[3, 3, 3, 3, 3], channels=1024),
    'context_pose': dict(),                                                  # the head, HRNet-W32 maps
}
SMALL = {
    'retnet': dict(num_frame=27, embed_dim=32, depth=2, chunk_size=27),
    'mixste': dict(num_frame=27, embed_dim=32, depth=2),
    'stc': dict(num_frame=27, embed_dim=32, depth=2),
    'stmo': dict(num_frame=27, layers=2, channel=32, d_hid=64),
    'aptpose': dict(num_frame=27, layers=2, channel=32, d_hid=64),
    'strided': dict(num_frame=27, layers=2, channel=32, d_hid=64),
    'uplift_upsample': dict(preset='h36m_81', spatial_dim=16, temporal_dim=32, depth=1, num_heads=2),
    'videopose': dict(filter_widths=[3, 3, 3], channels=64),
    'context_pose': dict(feature_channels=[8, 16, 32, 64], embed_dim_ratio=32),
}
RELEASE_OF = {'retnet': 'poseretnet', 'mixste': 'poseretnet', 'stc': 'poseretnet', 'stmo': 'pstmo',
              'strided': 'strided', 'videopose': 'videopose'}
NO_RELEASE = {'aptpose': 'its release is the P-STMO code with anatomy masks; not wired here',
              'uplift_upsample': 'the release is TensorFlow (not installed; bench_uplift.py runs it with --tf-python)',
              'context_pose': 'the release runs the head inside its HRNet pipeline only'}


def official_model(name, model, directory, config):
    """(callable x -> 3D output in our layout, description) of the release's code holding
    ``model``'s weights, or (None, reason)."""
    from common.train.checkpoint import load_checkpoint
    if name in ('retnet', 'mixste', 'stc'):
        from bench.bench_retnet import build_official, import_official
        reference = build_official(import_official(directory), name, config)
        load_checkpoint(model, {'model_pos': reference.state_dict()})  # the release's weights, its file layout
        return reference, 'PoseRetNet release'
    sys.path.insert(0, directory)
    try:
        if name == 'stmo':
            from bench.bench_stmo import official_pstmo
            reference = official_pstmo(directory, model, model.receptive_field).eval()
            return (lambda x: reference(x.permute(0, 3, 1, 2).unsqueeze(-1))[0][..., 0].permute(0, 2, 3, 1)), \
                'P-STMO release'
        if name == 'strided':
            from model.strided_transformer import Model
            strides = [layer.stride for layer in model.Transformer_reduce.model.layers]
            reference = Model(SimpleNamespace(layers=config['layers'], channel=config['channel'], d_hid=config['d_hid'],
                                              frames=model.receptive_field, stride_num=strides, n_joints=17,
                                              out_joints=17)).eval()
            reference.load_state_dict(model.state_dict())
            return (lambda x: reference(x)[0]), 'Strided Transformer release'
        if name == 'videopose':
            import importlib.util  # its file alone: its package is called common, as ours
            spec = importlib.util.spec_from_file_location('videopose3d_model', f'{directory}/common/model.py')
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            # its window model (strided convolutions, what its training runs); same keys as TemporalModel
            reference = module.TemporalModelOptimized1f(17, 2, 17, filter_widths=config['filter_widths'],
                                                        channels=config['channels']).eval()
            load_checkpoint(model, {'model_pos': reference.state_dict()})
            return reference, 'VideoPose3D release'
    finally:
        sys.path.remove(directory)
        for key in [k for k in sys.modules if k == 'model' or k.startswith('model.')]:
            del sys.modules[key]
    return None, 'no release code'


def interleaved(fns, repeats, sync):
    """Best wall time of each function, timed in alternation (one warm-up call each first)."""
    for fn in fns:
        fn()
    sync()
    best = [float('inf')] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def mean_joint_mm(a, b, scale):
    return (a.float() - b.float()).norm(dim=-1).mean().item() * 1000 / scale


def bench_model(name, config, args, official_dir, device, sync):
    from common.data.pose_codec import unit_scale
    torch.manual_seed(0)
    model = build_model(name, **config).to(device).eval()
    reference, label = (None, NO_RELEASE.get(name, 'no --official given'))
    if official_dir:
        try:
            reference, label = official_model(name, model, official_dir, config)
        except Exception as err:  # noqa: BLE001 -- a release that does not import is reported, not fatal
            reference, label = None, f'release code failed: {type(err).__name__}: {err}'
        if reference is not None:
            reference = reference.to(device) if isinstance(reference, torch.nn.Module) else reference
    params = sum(p.numel() for p in model.parameters())
    print(f'\n== {name} {config}: {params / 1e6:.2f}M parameters, receptive field {model.receptive_field}; '
          f'official: {label}')
    variants = [('eager fp32 aten', model)]  # the lifter as trained: ATen's kernels, the reference of "delta"
    for backend in args.backends:
        for precision in args.precisions:
            if (backend, precision) == ('onnxruntime', 'bf16') or (
                    (backend, precision) == ('eager', 'fp32') and device.type != 'cpu'):
                continue
            start = time.perf_counter()
            try:
                fast = accelerate(model, InferenceConfig(precision, backend), announce=lambda line: None)
                variants.append((f'{backend} {precision}', fast))
                print(f'   prepared {backend} {precision} in {time.perf_counter() - start:.1f} s')
            except Exception as err:  # noqa: BLE001
                print(f'   {backend} {precision}: failed ({type(err).__name__}: {str(err)[:120]})')
    scale = unit_scale(model)
    rows = []
    with torch.no_grad():
        for batch in (1, args.large_batch if model.predicts == 'centre' else args.large_sequence_batch):
            inputs = [t.to(device) if torch.is_tensor(t) else [m.to(device) for m in t]
                      for t in example_inputs(model, batch, seed=batch)]
            frames = batch * (model.receptive_field if model.predicts == 'sequence' else 1)
            truth = model(*inputs)
            fns = [lambda m=m: m(*inputs) for _, m in variants]
            gaps = [mean_joint_mm(m(*inputs), truth, scale) for _, m in variants]
            if reference is not None:
                fns.append(lambda: reference(*inputs))
                official_gap = mean_joint_mm(reference(*inputs), truth, scale)
            times = interleaved(fns, args.repeats, sync)
            official_time = times[-1] if reference is not None else None
            print(f'   batch {batch:<4} {"variant":<18}{"frames/s":>10}{"vs official":>13}{"delta mm":>10}')
            for (label_, _), seconds, gap in zip(variants, times, gaps):
                ratio = f'{official_time / seconds:.2f}x' if official_time else '-'
                print(f'   {"":<10} {label_:<18}{frames / seconds:>10.1f}{ratio:>13}{gap:>10.3f}')
                rows.append((name, batch, label_, frames / seconds, ratio, gap))
            if official_time:
                print(f'   {"":<10} {"official fp32":<18}{frames / official_time:>10.1f}{"1.00x":>13}'
                      f'{official_gap:>10.3f}')
                rows.append((name, batch, 'official fp32', frames / official_time, '1.00x', official_gap))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--small', action='store_true', help='tiny widths for a quick check')
    parser.add_argument('--models', default=','.join(PAPER), help='comma-separated models (default: all seed models)')
    parser.add_argument('--official', action='append', default=[], metavar='RELEASE=DIR',
                        help='a release checkout: poseretnet=DIR (PoseRetNet, MixSTE, STCFormer), pstmo=DIR, '
                             'strided=DIR, videopose=DIR; repeat the flag for several')
    parser.add_argument('--backends', default='eager,onnxruntime',
                        help='comma-separated: eager, compile, onnxruntime (compile takes minutes per paper '
                             'model on a CPU)')
    parser.add_argument('--precisions', default='fp32,bf16', help='comma-separated: fp32, bf16')
    parser.add_argument('--large-batch', type=int, default=64, help='the large batch of centre-frame models (windows)')
    parser.add_argument('--large-sequence-batch', type=int, default=4,
                        help='the large batch of sequence models (windows of 243 frames each)')
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (best of)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    args = parser.parse_args(argv)
    args.backends, args.precisions = args.backends.split(','), args.precisions.split(',')
    releases = dict(item.split('=', 1) for item in args.official)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu, {torch.get_num_threads()} threads'
    print(f'{where}, torch {torch.__version__}; frames/s of the window forward, best of {args.repeats}')
    rows = []
    for name in args.models.split(','):
        config = (SMALL if args.small else PAPER)[name]
        rows += bench_model(name, config, args, releases.get(RELEASE_OF.get(name)), device, sync)
    print('\n| model | batch | variant | frames/s | vs official | delta mm |\n|---|---|---|---|---|---|')
    for name, batch, label, fps, ratio, gap in rows:
        print(f'| {name} | {batch} | {label} | {fps:.1f} | {ratio} | {gap:.3f} |')


if __name__ == '__main__':
    main()
