"""Rendering speed of common/visualization.py: frames/s of GIF and MP4 animations.

    python -m bench.bench_render                           # 100 frames of the synthetic dataset
    python -m bench.bench_render --frames 300 --size 4
    python -m bench.bench_render -d h36m -k gt --root_path data --subject S9 --action 'Photo 1'

Each format is written twice in the same run: by render_animation (artists created once, then
updated in place) and by a naive reference that clears the figure and re-creates every axes
and artist on each frame. The scene has three panels (input, prediction, ground truth); the
"prediction" is the ground truth plus noise, so no model is needed. frames/s is wall-clock
(the writer's ffmpeg process included); CPU frames/s counts this process's CPU time only, which
is steadier on a shared machine.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from common import visualization as viz
from common.data.datasets import DataConfig, load_dataset


def load_scene(args):
    """The scene of one stream with at least ``--frames`` frames, and its description."""
    config = DataConfig(dataset=args.dataset, root_path=args.root_path, keypoints=args.keypoints,
                        subjects_train=[], subjects_test=[args.subject] if args.subject else None)
    _, sequences, spec = load_dataset(config)
    if args.action:
        sequences = [s for s in sequences if s.action == args.action]
    sequence = next((s for s in sequences if len(s) >= args.frames), None)
    if sequence is None:
        sys.exit(f'error: no stream of {args.frames} frames or more; lower --frames')
    rng = np.random.default_rng(0)
    prediction = sequence.pose3d + rng.normal(0, 0.02, sequence.pose3d.shape).astype(np.float32)
    if spec.root_joint is not None:
        prediction[:, spec.root_joint] = 0  # models predict root-relative poses
    scene = viz.scene_from_sequence(sequence, prediction, spec)
    return scene, f'{sequence.subject} {sequence.action} camera {sequence.camera}'


def render_naive(scene, path, frames, size, bitrate):
    """The reference: every frame clears the figure and builds all axes and artists again."""
    import matplotlib.pyplot as plt
    writer = viz.movie_writer(path, scene.fps, bitrate)
    fig = viz.new_figure(1, 1 + len(scene.poses), size)
    writer.setup(fig, path, dpi=viz.DPI)
    for t in range(frames):
        fig.clf()
        viz.add_panels(fig, scene, size)(t)
        writer.grab_frame()
    writer.finish()
    plt.close(fig)


def timed(run):
    """(wall seconds, CPU seconds of this process) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=100, help='frames rendered per measurement')
    parser.add_argument('--size', type=int, default=5, help='panel size in inches (100 dpi)')
    parser.add_argument('--bitrate', type=int, default=3000, help='MP4 kbit/s')
    parser.add_argument('-d', '--dataset', default='synthetic')
    parser.add_argument('-k', '--keypoints', default='gt')
    parser.add_argument('--root_path', default='data')
    parser.add_argument('--subject', default=None, help='test subject (default: the first)')
    parser.add_argument('--action', default=None, help='action (default: the first long enough)')
    args = parser.parse_args()
    scene, name = load_scene(args)
    width, height = viz.new_figure(1, 1 + len(scene.poses), args.size).canvas.get_width_height()
    print(f'{name}: {args.frames} frames of {width} x {height} px (3 panels)')
    print(f"{'format':<7}{'renderer':<22}{'frames/s':>10}{'CPU frames/s':>14}{'file':>10}")
    with tempfile.TemporaryDirectory() as directory:
        for ext in ('.gif', '.mp4'):
            speeds = {}
            for label in ('in place', 'naive (new axes)'):
                path = os.path.join(directory, f"{label.split()[0]}{ext}")
                if label == 'in place':
                    run = lambda: viz.render_animation(scene, path, limit=args.frames, size=args.size,  # noqa: E731
                                                       bitrate=args.bitrate, progress=False)
                else:
                    run = lambda: render_naive(scene, path, args.frames, args.size, args.bitrate)  # noqa: E731
                wall, cpu = timed(run)
                speeds[label] = args.frames / wall
                print(f"{ext[1:]:<7}{label:<22}{args.frames / wall:>10.1f}{args.frames / cpu:>14.1f}"
                      f"{os.path.getsize(path) / 1e6:>8.2f}MB")
            print(f"{ext[1:]:<7}speed-up {speeds['in place'] / speeds['naive (new axes)']:.1f}x")


if __name__ == '__main__':
    main()
