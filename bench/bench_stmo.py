"""Parameters, MACs per output frame and inference speed of the strided-transformer lifters.

    python -m bench.bench_stmo                  # paper configurations
    python -m bench.bench_stmo --small          # tiny configurations (CPU smoke run)
    python -m bench.bench_stmo --official DIR   # also time the released P-STMO code found in DIR
                                                # (a checkout of paTRICK-swk/P-STMO), same weights

These models predict the centre frame of each window, so one forward pass of batch B gives B
output frames; frames/s counts output frames. MACs = FLOPs / 2 as torch.utils.flop_counter
reports them for one window (matrix products and convolutions; norms and softmax excluded).

Two timings per model: `window` runs independent windows (batch B); `sequence` evaluates every
frame of a sequence as the centre of its own edge-padded window (the Human3.6M protocol, -tds 2
for the 243-frame models), where ours embeds each frame once for all the windows that contain
it and the released loop recomputes it in every window.
"""
import argparse
import sys
import time
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.eval.inference import predict_sequence
from models.windows import centre_windows
from models import build_model

PAPER = {
    'P-STMO-S (243 f, 3 layers)': ('stmo', dict(num_frame=243, layers=3)),
    'P-STMO (243 f, 4 layers)': ('stmo', dict(num_frame=243, layers=4)),
    'APTPose (243 f, 8 layers)': ('aptpose', dict(num_frame=243, layers=8)),
    'Strided Transformer (351 f)': ('strided', dict(num_frame=351, layers=3)),
}
SMALL = {
    'P-STMO small (27 f)': ('stmo', dict(num_frame=27, layers=2, channel=32, d_hid=64)),
    'APTPose small (27 f)': ('aptpose', dict(num_frame=27, layers=2, channel=32, d_hid=64)),
    'Strided small (27 f)': ('strided', dict(num_frame=27, layers=2, channel=32, d_hid=64)),
}


def macs_per_window(model, frames, joints=17):
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, frames, joints, 2, device=device))
    return counter.get_total_flops() / 2


def frames_per_second(runs, batch, seconds, rounds=5, sync=lambda: None):
    """Output frames per second of each ``run()`` in ``runs`` (one call = ``batch`` frames):
    the best of ``rounds`` timed rounds, the runs alternating round by round so that a busy
    machine slows them alike; one untimed warm-up call each."""
    best = [0.0] * len(runs)
    with torch.inference_mode():
        for run in runs:
            run()
        for _ in range(rounds):
            for i, run in enumerate(runs):
                calls, start = 0, time.perf_counter()
                while calls < 1 or time.perf_counter() - start < seconds / rounds:
                    run()
                    calls += 1
                sync()
                best[i] = max(best[i], calls * batch / (time.perf_counter() - start))
    return best


def official_pstmo(directory, model, frames):
    """The released P-STMO ``Model`` built at ``model``'s configuration, holding its weights."""
    sys.path.insert(0, directory)
    from model.stmo import Model  # the released module, imported from the given checkout
    config = model.model_config
    args = SimpleNamespace(layers=model.Transformer.model.layers.__len__(),
                           channel=model.Transformer.pos_embedding.shape[2],
                           d_hid=model.Transformer.model.layers[0].feed_forward.w_1.out_features,
                           frames=frames,
                           stride_num=[layer.stride for layer in model.Transformer_reduce.model.layers],
                           n_joints=config.get('num_joints', 17), out_joints=config.get('num_joints', 17))
    official = Model(args)
    official.load_state_dict(model.state_dict())
    return official.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--small', action='store_true', help='tiny configurations')
    parser.add_argument('--batch', type=int, default=64, help='windows per forward pass (64)')
    parser.add_argument('--seconds', type=float, default=3.0, help='timing per model (3)')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: leave as is)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--official', default=None, help='P-STMO checkout for a side-by-side timing')
    parser.add_argument('--sequence', type=int, default=600, help='frames of the evaluated sequence (600)')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    print(f'INFO: device {device}, {torch.get_num_threads()} threads, batch {args.batch}')
    print(f"{'model':32s} {'params':>11s} {'MMACs/frame':>12s} {'timing':>9s} {'frames/s':>10s}")
    for label, (name, config) in (SMALL if args.small else PAPER).items():
        model = build_model(name, **config).eval().to(device)
        frames = model.receptive_field
        tds = model.frame_step = 2 if frames == 243 else 1
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(args.batch, frames, 17, 2, device=device) * 0.3
        sequence = torch.randn(1, args.sequence, 17, 2, device=device) * 0.3
        runs = {'window': [lambda: model(x)],
                'sequence': [lambda: predict_sequence(model, sequence, max_batch=args.batch)]}
        gaps = {}
        if args.official and name == 'stmo':
            official = official_pstmo(args.official, model, frames).to(device)
            released = x.permute(0, 3, 1, 2).unsqueeze(-1)  # [B, 2, F, J, 1] released layout
            windows = centre_windows(sequence, frames, tds)

            def official_sequence():
                return torch.cat([official(w.permute(0, 3, 1, 2).unsqueeze(-1))[0][..., 0].permute(0, 2, 3, 1)
                                  for w in windows.split(args.batch)])
            with torch.inference_mode():
                gaps['window'] = (official(released)[0][..., 0].permute(0, 2, 3, 1) - model(x)).abs().max().item()
                gaps['sequence'] = (official_sequence()[:, 0] - predict_sequence(model, sequence,
                                                                                max_batch=args.batch)[0]).abs().max().item()
            runs['window'].append(lambda: official(released))
            runs['sequence'].append(official_sequence)
        macs = macs_per_window(model, frames) / 1e6
        for timing, calls in runs.items():
            count = args.batch if timing == 'window' else args.sequence
            rates = frames_per_second(calls, count, args.seconds * len(calls), sync=sync)
            first = timing == 'window'
            print(f"{label if first else '':32s} {f'{params:,d}' if first else '':>11s} "
                  f"{f'{macs:.1f}' if first else '':>12s} {timing:>9s} {rates[0]:10.1f}")
            if len(rates) > 1:
                print(f"{'  released code, same weights':32s} {'':11s} {'':12s} {timing:>9s} {rates[1]:10.1f}"
                      f"   (ours / released {rates[0] / rates[1]:.2f}x, max |diff| {gaps[timing]:.1e})")


if __name__ == '__main__':
    main()
