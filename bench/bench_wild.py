"""Speed of the in-the-wild path: frames/s of read + select + fill + convert + lift + write for a
1000-frame video, next to the lifting alone, for each keypoint format.

    python -m bench.bench_wild                       # VideoPose3D 243 frames, 1024 channels
    python -m bench.bench_wild --small               # 27 frames, 256 channels (quick on a CPU)
    python -m bench.bench_wild --frames 3000 --model-input h36m_17

The keypoint files are made here, in each tool's layout (docs: data-formats 5.2-5.5): one walking
person and a second one in part of the frames, 2 % of the frames without anybody (gaps to fill).
"Whole path" is common/in_the_wild.py as the command runs it (prepare_video, lift, the .npy and
JSON writers; no overlay video); "lifting alone" is predict_sequence on the prepared 2D, measured in
the same run. Wall-clock seconds, best of --repeat.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from common.in_the_wild import WildInput, WildOutputs, lift, prepare_video, write_outputs

WIDTH, HEIGHT = 1280, 720


def walking(frames, rng, shift=0.0):
    """[T, 17, 3] COCO-17 pixels + confidence of a person walking across the frame."""
    base = np.array([[0, -70], [-5, -75], [5, -75], [-12, -72], [12, -72], [-25, -45], [25, -45], [-32, -10],
                     [32, -10], [-35, 20], [35, 20], [-15, 25], [15, 25], [-17, 85], [17, 85], [-18, 145],
                     [18, 145]], float) * 1.6
    t = np.arange(frames)[:, None]
    swing = 20 * np.sin(2 * np.pi * t / 30.0) * np.array([0] * 5 + [1, -1] * 6)
    points = base[None].repeat(frames, 0)
    points[..., 0] += swing + (WIDTH * (0.2 + shift) + 0.4 * t)
    points[..., 1] += HEIGHT * 0.45
    points += rng.normal(0, 1.5, points.shape)
    return np.concatenate([points, rng.uniform(0.5, 1.0, (frames, 17, 1))], -1)


def make_files(directory, frames, seed=0):
    """{format: path} of the same video in each tool's layout."""
    rng = np.random.default_rng(seed)
    first, second = walking(frames, rng), walking(frames, rng, shift=0.4)
    empty = rng.random(frames) < 0.02
    with_second = (np.arange(frames) % 200) < 120
    files = {}
    items = []
    for t in range(frames):
        for track, person in ((1, first), (2, second)):
            if not empty[t] and (track == 1 or with_second[t]):
                items.append({'image_id': f'{t}.jpg', 'category_id': 1, 'keypoints': person[t].ravel().tolist(),
                              'score': 2.5, 'box': [0, 0, 100, 300], 'idx': track})
    files['alphapose'] = os.path.join(directory, 'alphapose-results.json')
    with open(files['alphapose'], 'w') as handle:
        json.dump(items, handle)
    folder = os.path.join(directory, 'openpose')
    os.makedirs(folder)
    from_coco = [0, None, 6, 8, 10, 5, 7, 9, None, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3] + [None] * 6
    for t in range(frames):
        people = []
        for person in [] if empty[t] else [first] + ([second] if with_second[t] else []):
            flat = np.zeros((25, 3))
            for joint in range(25):
                if from_coco[joint] is not None:
                    flat[joint] = person[t, from_coco[joint]]
            people.append({'person_id': [-1], 'pose_keypoints_2d': flat.ravel().round(3).tolist()})
        with open(os.path.join(folder, f'clip_{t:012d}_keypoints.json'), 'w') as handle:
            json.dump({'version': 1.3, 'people': people}, handle, separators=(',', ':'))
    found = lambda t: {'keypoints': first[t, :, :2].tolist(), 'keypoint_scores': first[t, :, 2].tolist(),  # noqa: E731
                       'bbox': [[0, 0, 100, 300]], 'bbox_score': 0.9}
    nobody = lambda t: {'keypoints': first[t, :, :2].tolist(), 'keypoint_scores': [0.1] * 17,  # noqa: E731
                        'bbox': [[0, 0, WIDTH, HEIGHT]], 'bbox_score': 1.0}  # MMPose's whole-image stand-in
    mmpose = [{'frame_id': t, 'instances': [nobody(t) if empty[t] else found(t)]} for t in range(frames)]
    files['mmpose'] = os.path.join(directory, 'clip.json')
    with open(files['mmpose'], 'w') as handle:
        json.dump(mmpose, handle, indent='  ')
    boxes, keypoints = np.empty((frames, 2), object), np.empty((frames, 2), object)
    for t in range(frames):
        boxes[t, 0], keypoints[t, 0] = [], []
        if empty[t]:
            boxes[t, 1], keypoints[t, 1] = [], []
            continue
        people = [first] + ([second] if with_second[t] else [])
        boxes[t, 1] = np.array([[0, 0, 100, 300, 0.99 - 0.1 * i] for i in range(len(people))], np.float32)
        rows = [np.stack([p[t, :, 0], p[t, :, 1], np.zeros(17), p[t, :, 2]]) for p in people]
        keypoints[t, 1] = np.stack(rows).astype(np.float32)
    files['detectron2'] = os.path.join(directory, 'clip.mp4.npz')
    np.savez_compressed(files['detectron2'], boxes=boxes, segments=np.full(frames, None, object), keypoints=keypoints,
                        metadata={'w': WIDTH, 'h': HEIGHT})
    files['openpose'] = folder
    return files


def best_of(repeat, run):
    best, value = float('inf'), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - start)
    return best, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=1000, help='frames of the video')
    parser.add_argument('--small', action='store_true', help='a 27-frame, 256-channel VideoPose3D (CPU)')
    parser.add_argument('--model-input', choices=['coco_17', 'h36m_17'], default='coco_17',
                        help='the layout the model takes (h36m_17 adds the joint conversion)')
    parser.add_argument('--repeat', type=int, default=3, help='measurements per number (the best is kept)')
    args = parser.parse_args()
    from models import build_model
    widths, channels = ([3, 3, 3], 256) if args.small else ([3, 3, 3, 3, 3], 1024)
    model = build_model('videopose', filter_widths=widths, channels=channels,
                        input_layout=args.model_input if args.model_input != 'h36m_17' else None).eval()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)
    print(f'VideoPose3D {model.receptive_field} frames, {channels} channels, {args.model_input} input, on {device}, '
          f'torch threads {torch.get_num_threads()}; a {args.frames}-frame {WIDTH}x{HEIGHT} video, flip test on')
    print(f"{'format':<12}{'prepare s':>10}{'lift s':>9}{'write s':>9}{'whole path fps':>16}{'lifting alone fps':>19}"
          f"{'lifting share':>15}")
    with tempfile.TemporaryDirectory() as directory:
        files = make_files(directory, args.frames)
        for tool, path in files.items():
            inp = WildInput(path, tool, video_size=(WIDTH, HEIGHT))
            outputs = WildOutputs(npy=os.path.join(directory, 'poses.npy'),
                                  json=os.path.join(directory, 'poses.json'))
            prepare_s, video = best_of(args.repeat, lambda: prepare_video(inp, args.model_input))
            lift_s, poses = best_of(args.repeat, lambda: lift(model, video))
            write_s, _ = best_of(args.repeat, lambda: write_outputs(video, poses, outputs, progress=False))

            def whole():
                prepared = prepare_video(inp, args.model_input)
                return write_outputs(prepared, lift(model, prepared), outputs, progress=False)
            whole_s, _ = best_of(args.repeat, whole)
            print(f'{tool:<12}{prepare_s:>10.3f}{lift_s:>9.3f}{write_s:>9.3f}{args.frames / whole_s:>16.0f}'
                  f'{args.frames / lift_s:>19.0f}{lift_s / whole_s:>14.0%}')


if __name__ == '__main__':
    main()
