"""Training and inference throughput of every registered lifter, in fp32 and bf16.

    python -m bench.bench_train                     # paper configurations, Human3.6M-sized evaluation
    python -m bench.bench_train --small             # tiny configurations and data (CPU smoke run)
    python -m bench.bench_train --models videopose,mixste --batch 64 --json out.json

For each model (those whose input is 2D keypoints alone; not context_pose, which needs image
features, nor the refine module, which needs a 3D estimate too) at its paper configuration
(the factory defaults):

* train windows/s and frames/s -- optimiser steps (forward, the model's own loss, backward,
  AdamW) on random windows; frames = supervised output frames (1 per window for centre-frame
  models, F for sequence models);
* infer frames/s -- whole-sequence prediction as the evaluation runs it (common.eval.inference);
* peak GPU memory of each phase;
* MFU -- model FLOPs (torch.utils.flop_counter: matrix products, convolutions, attention) per
  second over the device's dense peak for that precision (table below; fp32 means no TF32);
* eval s -- wall time of a full evaluation (flip averaging on, metrics included) over data the
  size of the Human3.6M test set: 2 subjects x 30 actions x 4 cameras x 2300 frames = 552k
  frames (--small: 2 x 2 x 4 x 200).
"""
import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from common.cli.command_line import accepted_kwargs
from common.data.datasets import H36M_SPEC, Sequence
from common.train.engine import TrainingObjective
from common.eval.evaluation import EvalConfig, evaluate
from common.eval.inference import predict_sequence
from models import build_model, get_entry, model_names

# need image features / a 3D estimate / the camera as well ('refined' = a listed lifter + refine)
NOT_2D_ONLY = {'context_pose', 'refine', 'refined'}

# Dense peak TFLOP/s (no sparsity) by GPU name fragment: (bf16 tensor cores, fp32 without TF32).
PEAK_TFLOPS = [
    ('H200', 989.0, 66.9), ('H100 SXM', 989.0, 66.9), ('H100 80GB HBM3', 989.0, 66.9),
    ('H100 NVL', 835.0, 60.0), ('H100 PCIe', 756.0, 51.2), ('H100', 756.0, 51.2),
    ('A100', 312.0, 19.5), ('L40S', 362.0, 91.6), ('L4', 121.0, 30.3), ('A10', 125.0, 31.2),
]

# --small: candidate keywords, each passed only where the factory's signature names it
SMALL_KWARGS = dict(num_frame=27, embed_dim=32, depth=2, num_heads=4, layers=2, channel=32, d_hid=64,
                    channels=64, filter_widths=[3, 3, 3], chunk_size=9, spatial_dim=32, temporal_dim=32,
                    spatial_depth=1, temporal_depth=1)
SMALL_OVERRIDES = {'uplift_upsample': dict(preset='h36m_81', spatial_dim=32, temporal_dim=32,
                                           spatial_depth=1, temporal_depth=1, num_heads=4)}


def peak_tflops(device):
    """(bf16, fp32) dense peak TFLOP/s of ``device``, or (None, None) if unknown (CPU)."""
    if device.type != 'cuda':
        return None, None
    name = torch.cuda.get_device_name(device)
    for fragment, bf16, fp32 in PEAK_TFLOPS:
        if fragment in name:
            return bf16, fp32
    return None, None


def build(name, small):
    if not small:
        return build_model(name)
    factory = get_entry(name).factory
    kwargs = SMALL_OVERRIDES.get(name) or accepted_kwargs(factory, SMALL_KWARGS)
    return build_model(name, **kwargs)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(step, device, seconds, min_calls=2):
    """Seconds per call of ``step()`` after one warm-up call (at least ``min_calls`` timed)."""
    step()
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        step()
        calls += 1
    sync(device)
    return (time.perf_counter() - start) / calls


def peak_memory(device, fn):
    """(result of fn(), peak GPU memory in GiB during it; None on CPU)."""
    if device.type != 'cuda':
        return fn(), None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    return result, torch.cuda.max_memory_allocated(device) / 2 ** 30


def flops_of(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_training(model, batch, device, seconds):
    frames = model.receptive_field
    generator = torch.Generator(device='cpu').manual_seed(0)
    x = (torch.randn(batch, frames, 17, 2, generator=generator) * 0.3).to(device)
    y = (torch.randn(batch, frames, 17, 3, generator=generator) * 0.3).to(device)
    objective = TrainingObjective(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    out_frames = frames if model.predicts == 'sequence' else 1
    results = {}
    for precision in ('fp32', 'bf16'):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
                loss = objective(x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        per_step, memory = peak_memory(device, lambda: timed(step, device, seconds))
        results[precision] = {'windows_per_s': batch / per_step, 'frames_per_s': batch * out_frames / per_step,
                              'peak_memory_gib': memory, 'step_s': per_step}

    def forward_backward():
        objective(x, y).backward()
    flops = flops_of(forward_backward)
    optimizer.zero_grad(set_to_none=True)
    for precision in results:
        results[precision]['tflops_per_s'] = flops / results[precision]['step_s'] / 1e12
    return results


@torch.no_grad()
def bench_inference(model, length, device, seconds):
    model.eval()
    pose2d = (torch.randn(1, length, 17, 2, generator=torch.Generator().manual_seed(1)) * 0.3).to(device)
    results = {}
    for precision in ('fp32', 'bf16'):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
                predict_sequence(model, pose2d)
        per_call, memory = peak_memory(device, lambda: timed(run, device, seconds))
        results[precision] = {'frames_per_s': length / per_call, 'peak_memory_gib': memory, 'call_s': per_call}
    flops = flops_of(lambda: predict_sequence(model, pose2d))
    for precision in results:
        results[precision]['tflops_per_s'] = flops / results[precision]['call_s'] / 1e12
    return results


def evaluation_data(subjects, actions, cameras, frames, seed=0):
    """Random-walk 2D/3D streams with the Human3.6M test set's layout (content is irrelevant to timing)."""
    rng = np.random.default_rng(seed)
    sequences = []
    for s in range(subjects):
        for a in range(actions):
            pose3d = np.cumsum(rng.normal(0, 0.002, (frames, 17, 3)), 0).astype(np.float32) + [0, 0, 4]
            for c in range(cameras):
                pose2d = (pose3d[..., :2] / pose3d[..., 2:] + rng.normal(0, 0.002, (frames, 17, 2))).astype(np.float32)
                sequences.append(Sequence(pose2d=pose2d, pose3d=pose3d, subject=f'S{9 + 2 * s}',
                                          action=f'Action{a}', camera=c, group=f'Action{a}'))
    return sequences


def bench_evaluation(model, sequences, device):
    sync(device)
    start = time.perf_counter()
    results = evaluate(model, sequences, H36M_SPEC, EvalConfig(flip=True), device)
    sync(device)
    return {'seconds': time.perf_counter() - start, 'frames': sum(len(s) for s in sequences),
            'mpjpe_mm': results.get('mpjpe')}


def mfu(tflops, peak):
    return None if tflops is None or not peak else tflops / peak


def format_row(name, params, train, infer, evaluation, peaks):
    def number(value, fmt):
        return format(value, fmt) if value is not None else '-'
    cells = [f'{name:<16}', f'{params:>7.2f}']
    for precision, peak in zip(('fp32', 'bf16'), (peaks[1], peaks[0])):
        t, i = train[precision], infer[precision]
        cells += [f"{t['windows_per_s']:>9.0f}", f"{t['frames_per_s']:>10.0f}", f"{i['frames_per_s']:>10.0f}",
                  f"{number(mfu(t['tflops_per_s'], peak), '.1%'):>6}", f"{number(t['peak_memory_gib'], '.2f'):>6}"]
    cells.append(f"{evaluation['seconds']:>7.1f}")
    return ' '.join(cells)


HEADER = (f"{'model':<16} {'params':>7} " + ' '.join(
    f"{'train w/s':>9} {'train f/s':>10} {'infer f/s':>10} {'MFU':>6} {'GiB':>6}".replace('train', p + ' tr')
    .replace('infer', p + ' in') for p in ('32', 'bf')) + f" {'eval s':>7}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--small', action='store_true', help='tiny models and data (CPU smoke run)')
    parser.add_argument('--models', default=None, help='comma-separated subset of the registered models')
    parser.add_argument('--batch', type=int, default=None, help='training windows per step (default 256 for '
                        'centre-frame models, 16 for sequence models; --small: 8)')
    parser.add_argument('--seconds', type=float, default=None, help='timing per measurement (default 3; --small 0.2)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', default=None, metavar='FILE', help='also write the numbers here')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch\'s; --small: 1, '
                        'as busy shared cores make several threads wait on each other)')
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads or (args.small and device.type == 'cpu'):
        torch.set_num_threads(args.threads or 1)
    seconds = args.seconds or (0.2 if args.small else 3.0)
    names = args.models.split(',') if args.models else [n for n in model_names() if n not in NOT_2D_ONLY]
    layout = (2, 2, 4, 200) if args.small else (2, 30, 4, 2300)
    sequences = evaluation_data(*layout)
    peaks = peak_tflops(device)
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'} "
          f"({torch.get_num_threads()} threads); peak TFLOP/s bf16 {peaks[0]}, fp32 {peaks[1]}; "
          f"evaluation over {sum(len(s) for s in sequences)} frames, flip on")
    print(HEADER)
    report = {'device': str(device), 'peak_tflops': {'bf16': peaks[0], 'fp32': peaks[1]}, 'models': {}}
    for name in names:
        model = build(name, args.small).to(device)
        batch = args.batch or (8 if args.small else (16 if model.predicts == 'sequence' else 256))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        train = bench_training(model, batch, device, seconds)
        infer = bench_inference(model, max(4 * model.receptive_field, 200 if args.small else 2300), device, seconds)
        evaluation = bench_evaluation(model, sequences, device)
        for precision, peak in (('fp32', peaks[1]), ('bf16', peaks[0])):
            train[precision]['mfu'] = mfu(train[precision]['tflops_per_s'], peak)
            infer[precision]['mfu'] = mfu(infer[precision]['tflops_per_s'], peak)
        print(format_row(name, params, train, infer, evaluation, peaks), flush=True)
        report['models'][name] = {'params_m': params, 'receptive_field': model.receptive_field, 'batch': batch,
                                  'train': train, 'inference': infer, 'evaluation': evaluation,
                                  'config': getattr(model, 'model_config', {})}
        del model
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(report, handle, indent=2, default=float)
        print(f'INFO: numbers written to {args.json}')
    return report


if __name__ == '__main__':
    main()
