"""Windows per second of the vectorised window datasets against a plain per-window loop.

    python -m bench.bench_windows [--streams 200 --length 2000 --batch 1024]

The reference builds every window frame by frame in Python, clamping indices to the stream
(edge padding). Both produce identical batches (checked)."""
import argparse

import numpy as np

from common.data.datasets import Sequence
from common.data.generators import WindowConfig, WindowDataset
from bench.timing import measure


def reference_batch(sequences, windows, kind, frames, tds):
    """Plain loops: every window, every frame, clamped to the stream (edge padding)."""
    inputs, targets = [], []
    for seq_index, offset in windows:
        seq = sequences[seq_index]
        last = len(seq) - 1
        if kind == 'seq2seq':
            index = [offset + k for k in range(frames)]
        else:
            index = [offset + (k - frames // 2) * tds for k in range(frames)]
        inputs.append(np.stack([seq.pose2d[min(max(i, 0), last)] for i in index]))
        targets.append(np.stack([seq.pose3d[min(max(i, 0), last)] for i in index]))  # root-relative already
    return np.stack(inputs), np.stack(targets)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--streams', type=int, default=100)
    parser.add_argument('--length', type=int, default=2000)
    parser.add_argument('--batch', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sequences = [Sequence(rng.standard_normal((args.length, 17, 2)).astype(np.float32),
                          rng.standard_normal((args.length, 17, 3)).astype(np.float32), 'S1', 'A', 0, 'A')
                 for _ in range(args.streams)]
    print(f'{args.streams} streams x {args.length} frames, batches of {args.batch} windows')
    print(f"{'kind':<22}{'vectorised windows/s':>22}{'reference loop windows/s':>26}{'speed-up':>10}")
    for kind, frames, tds in (('seq2seq', 243, 1), ('seq2frame', 243, 2), ('seq2frame', 27, 1)):
        data = WindowDataset(sequences, WindowConfig(kind, frames=frames, tds=tds, flip=False))
        index = rng.choice(len(data), args.batch, replace=True)
        windows = list(zip(data.window_seq[index], data.window_offset[index]))
        ours = data.__getitems__(index)
        ref_in, ref_target = reference_batch(sequences, windows, kind, frames, tds)
        assert np.array_equal(ours['input2d'].numpy(), ref_in) and np.array_equal(ours['target3d'].numpy(), ref_target)
        fast = measure(lambda: data.__getitems__(index), args.repeats)
        slow = measure(lambda: reference_batch(sequences, windows, kind, frames, tds), max(1, args.repeats // 2))
        label = f'{kind} F={frames} tds={tds}'
        print(f'{label:<22}{args.batch / fast:>22,.0f}{args.batch / slow:>26,.0f}{slow / fast:>9.1f}x')


if __name__ == '__main__':
    main()
