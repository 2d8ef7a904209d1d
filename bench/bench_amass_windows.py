"""Windows per second of AMASS training windows, each projected through a camera drawn per window
(CameraDrawWindows), next to the same windows gathered from streams projected once (WindowDataset,
the baseline), measured in the same run.

    python -m bench.bench_amass_windows [--sequences 50 --length 2000 --batch 512 --frames 351 --step 5]

The release's amass_351 windows: 71 tokens every 5th frame (--frames 351 --step 5 -> 71 frames)."""
import argparse

import numpy as np

from common.data.amass_views import CameraDrawWindows, h36m_view_table, world_sequences
from common.data.generators import WindowConfig, WindowDataset
from common.data.skeleton import H36M_17
from bench.timing import measure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sequences', type=int, default=50)
    parser.add_argument('--length', type=int, default=2000)
    parser.add_argument('--batch', type=int, default=512)
    parser.add_argument('--frames', type=int, default=351, help='receptive field (frames spanned)')
    parser.add_argument('--step', type=int, default=5, help='frames between window tokens (s_out)')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 0.01, (args.sequences, args.length, 1, 3)), axis=1)
    bodies = rng.uniform([-0.3, -0.3, 0.0], [0.3, 0.3, 1.7], (args.sequences, 1, 17, 3))
    found = [('CMU', str(i), 'seq', (walk[i] + bodies[i]).astype(np.float32)) for i in range(args.sequences)]
    sequences = world_sequences(found, h36m_view_table(), rng)
    config = WindowConfig('seq2frame', frames=(args.frames - 1) // args.step + 1, tds=args.step, flip=True)
    pairs = H36M_17.flip_pairs
    drawn, fixed = CameraDrawWindows(sequences, config, pairs, pairs), WindowDataset(sequences, config, pairs, pairs)
    index = rng.choice(len(drawn), args.batch, replace=False)
    t_drawn = measure(lambda: drawn.__getitems__(index), args.repeats)
    t_fixed = measure(lambda: fixed.__getitems__(index), args.repeats)
    print(f'{args.sequences} sequences x {args.length} frames, batches of {args.batch} windows of '
          f'{config.frames} frames (every {args.step}th)')
    print(f"{'windows':<34}{'windows/s':>12}{'ms/batch':>10}")
    print(f"{'camera drawn per window (ours)':<34}{args.batch / t_drawn:>12.0f}{t_drawn * 1e3:>10.1f}")
    print(f"{'projected once (baseline)':<34}{args.batch / t_fixed:>12.0f}{t_fixed * 1e3:>10.1f}")
    print(f'cost of the per-window projection: {t_drawn / t_fixed:.2f}x the gather alone')


if __name__ == '__main__':
    main()
