"""Speed of the PoseRetNet family: parameters, MACs per output frame, frames/s of the forward
pass (batch 1 and a large batch) and of whole-sequence evaluation, and the per-frame latency
of causal streaming after 10, 100 and 1000 frames of history.

    python -m bench.bench_retnet --small                    # quick CPU run, small widths
    python -m bench.bench_retnet                            # published configurations
    python -m bench.bench_retnet --official /path/to/PoseRetNet   # side by side with the release

With --official (a checkout of Kelly510/PoseRetNet) the release's classes are built with the
same configuration, given the same weights, checked for equal outputs and timed interleaved
with ours (best of --repeats rounds, which damps the noise of a shared machine).
"""
import argparse
import importlib
import sys
import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.train.checkpoint import load_checkpoint
from common.eval.inference import predict_sequence
from models.windows import predict_seq2seq
from models.windows import centre_windows
from models import build_model

PAPER = {'retnet': dict(num_frame=243, embed_dim=512, depth=8, chunk_size=243),
         'mixste': dict(num_frame=243, embed_dim=512, depth=8),
         'stc': dict(num_frame=243, embed_dim=256, depth=6)}
SMALL = {'retnet': dict(num_frame=81, embed_dim=64, depth=2, chunk_size=81),
         'mixste': dict(num_frame=81, embed_dim=64, depth=2),
         'stc': dict(num_frame=81, embed_dim=64, depth=2)}
OFFICIAL_CLASS = {'retnet': ('model_retnet', 'RetMixSTE'), 'mixste': ('model_mixste', 'MixSTE2'),
                  'stc': ('model_stc', 'STCModel')}


def best_time(fn, repeats):
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved(fns, repeats):
    """Best time of each function, timing them in alternation so that load changes hit all."""
    for fn in fns:
        fn()
    best = [float('inf')] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def macs_per_frame(model, clip):
    with FlopCounterMode(display=False) as counter:
        model(clip)
    return counter.get_total_flops() / 2 / (clip.shape[0] * clip.shape[1])


@contextmanager
def cpu_only_cuda():
    """The release's STCModel calls .cuda() on a constant; make that a no-op on CPU machines."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def import_official(repo):
    """The release's model classes, imported under its own ``common`` package and then set
    aside so that ours stays importable."""
    ours = {k: v for k, v in sys.modules.items() if k == 'common' or k.startswith('common.')}
    for key in ours:
        del sys.modules[key]
    sys.path.insert(0, repo)
    try:
        return {name: getattr(importlib.import_module(f'common.model.{module}'), cls)
                for name, (module, cls) in OFFICIAL_CLASS.items()}
    finally:
        sys.path.remove(repo)
        for key in [k for k in sys.modules if k == 'common' or k.startswith('common.')]:
            del sys.modules[key]
        sys.modules.update(ours)


def build_official(classes, name, config, **extra):
    kwargs = dict(num_frame=config['num_frame'], num_joints=17, embed_dim_ratio=config['embed_dim'],
                  depth=config['depth'], drop_path_rate=0.0)
    if name == 'retnet':
        kwargs.update(joint_related=True, chunk_size=config['chunk_size'], causal=False, dataset='h36m')
    kwargs.update(extra)
    with cpu_only_cuda():
        return classes[name](**kwargs).eval()


def official_chunkwise(model, clip, chunk):
    """The release's evaluate_chunkwise loop (without the flip copy)."""
    outputs, states = [], None
    for n in range((clip.shape[1] + chunk - 1) // chunk):
        out, states = model(clip[:, n * chunk:(n + 1) * chunk], S_prev_list=states, n=n)
        outputs.append(out)
    return torch.cat(outputs, 1)


def official_stc_sequence(model, clip, frames):
    """The release's STC evaluation: one stride-3 window per frame, middle kept."""
    windows = centre_windows(clip, frames, 3)
    return torch.cat([model(w)[:, (frames - 1) // 2] for w in windows.split(256)]).view(*clip.shape[:2], -1, 3)


def streaming_latency(step, state, histories, rounds=15, joints=17):
    """Median time of one step from the state reached after each history length; the
    histories are timed in alternation so that load changes hit all of them alike.

    step(frame [1, J, 2], state, t) -> new state (t = index of the frame in the stream)."""
    frame, snapshots = torch.randn(1, joints, 2) * 0.5, {}
    for t in range(max(histories) + 1):
        if t in histories:
            snapshots[t] = state
        state = step(frame, state, t)
    times = {h: [] for h in histories}
    for _ in range(rounds):
        for h in histories:
            start = time.perf_counter()
            step(frame, snapshots[h], h)
            times[h].append(time.perf_counter() - start)
    return {h: sorted(v)[len(v) // 2] for h, v in times.items()}


def ours_step(model):
    return lambda frame, state, t: model.step(frame, state)[1]


def official_step(model):
    """The release's only per-frame path for a causal model: chunkwise with chunk_size 1."""
    return lambda frame, state, t: model(frame[:, None], S_prev_list=state, n=t)[1]


def report(label, count, mine, ref=None, extra=''):
    if ref is None:
        print(f'   {label:<20} {count / mine:10.1f} frames/s')
    else:
        print(f'   {label:<20} {count / mine:10.1f} {count / ref:14.1f} {ref / mine:8.2f}x{extra}')


def bench_model(name, config, args, official):
    """Print size, MACs and throughput of one model (side by side with the release if given)."""
    frames, large = config['num_frame'], args.large_batch or (32 if args.small else 4)
    length = args.sequence or (4 * frames + frames // 2)
    if name == 'stc' and not args.small and not args.sequence:
        length = 40  # one full forward per evaluated frame
    model = build_model(name, **config).eval()
    clip1, clip_large = torch.randn(1, frames, 17, 2) * 0.5, torch.randn(large, frames, 17, 2) * 0.5
    sequence = torch.randn(1, length, 17, 2) * 0.5
    macs = macs_per_frame(model, clip1)
    print(f'\n== {name} {config}: {sum(p.numel() for p in model.parameters()):,} parameters, '
          f'{macs / 1e6:.1f} M MACs per output frame')
    if name == 'stc':
        print(f'   its evaluation runs one {frames}-frame window per output frame: {macs * frames / 1e9:.2f} G MACs/frame')
    work = [('forward b1', frames, lambda m: m(clip1)), (f'forward b{large}', frames * large, lambda m: m(clip_large)),
            (f'sequence T={length}', length, lambda m: predict_sequence(m, sequence))]
    if official is None:
        for label, count, fn in work:
            report(label, count, best_time(lambda: fn(model), args.repeats))
    else:
        reference = build_official(official, name, config)
        load_checkpoint(model, {'model_pos': reference.state_dict()})      # the release's file layout
        reference.receptive_field, reference.predicts = frames, 'sequence'  # for the shared windowing
        sequence_ref = {'retnet': lambda m: official_chunkwise(m, sequence, config['chunk_size']),
                        'stc': lambda m: official_stc_sequence(m, sequence, frames)}.get(
                            name, lambda m: predict_seq2seq(m, sequence, 1024))
        theirs = [work[0][2], work[1][2], sequence_ref]
        print(f'   outputs equal: max |ours - official| forward {(model(clip1) - reference(clip1)).abs().max():.2e}, '
              f'sequence {(work[2][2](model) - sequence_ref(reference)).abs().max():.2e}')
        print(f'   {"":<20} {"ours fr/s":>10} {"official fr/s":>14} {"speed-up":>9}')
        for (label, count, fn), fn_ref in zip(work, theirs):
            report(label, count, *interleaved([lambda: fn(model), lambda: fn_ref(reference)], args.repeats))
    if name != 'retnet':
        return
    for chunk in (9,) if args.small else (27, 9):
        chunked = build_model(name, **{**config, 'chunk_size': chunk}).eval()
        chunked.load_state_dict(model.state_dict())
        label = f'sequence chunk {chunk}'
        if official is None:
            report(label, length, best_time(lambda: chunked.predict_sequence(sequence), args.repeats))
            continue
        reference = build_official(official, name, {**config, 'chunk_size': chunk})
        reference.load_state_dict(model.state_dict())
        gap = (chunked.predict_sequence(sequence) - official_chunkwise(reference, sequence, chunk)).abs().max()
        times = interleaved([lambda: chunked.predict_sequence(sequence),
                             lambda: official_chunkwise(reference, sequence, chunk)], args.repeats)
        report(label, length, *times, extra=f'  (max gap {gap:.1e})')
    causal = build_model(name, **{**config, 'causal': True}).eval()
    causal.load_state_dict(model.state_dict())
    latency = streaming_latency(ours_step(causal), causal.init_state(1), (10, 100, 1000))
    print('   causal streaming, ms per frame at history ' + ', '.join(f'{h}: {s * 1e3:.2f}' for h, s in latency.items()))
    if official is not None:
        reference = build_official(official, name, {**config, 'chunk_size': 1}, causal=True)
        reference.load_state_dict(model.state_dict())
        latency = streaming_latency(official_step(reference), None, (10, 100, 1000))
        print('   official (chunkwise, chunk 1), ms per frame at history '
              + ', '.join(f'{h}: {s * 1e3:.2f}' for h, s in latency.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--small', action='store_true', help='small widths for a quick CPU run')
    parser.add_argument('--official', default=None, help='path of a PoseRetNet checkout to compare with')
    parser.add_argument('--models', default='retnet,mixste,stc')
    parser.add_argument('--large-batch', type=int, default=None, help='large batch size (default 32 small / 4)')
    parser.add_argument('--sequence', type=int, default=None, help='frames of the evaluated sequence')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    official = import_official(args.official) if args.official else None
    torch.manual_seed(0)
    print(f'cpu, {torch.get_num_threads()} threads, torch {torch.__version__}')
    with torch.no_grad():
        for name in args.models.split(','):
            bench_model(name, (SMALL if args.small else PAPER)[name], args, official)


if __name__ == '__main__':
    main()
