"""Uplift-and-Upsample cost and speed: parameters, MACs per output frame, frames/s.

    python -m bench.bench_uplift                 # h36m_351 and h36m_81
    python -m bench.bench_uplift --small         # tiny configuration, quick CPU check
    python -m bench.bench_uplift --official-repo DIR --tf-python PY
        # also time the official TensorFlow model (its repository checked out in DIR, run by
        # the Python interpreter PY that has TensorFlow) on the same windows and weights,
        # and check that both give the same outputs

On a machine shared with other work pass --threads 1: with several threads, one thread
descheduled by another process stalls the others, and timings swing by a factor of 5.

Two ways to produce a pose for every video frame, as in the paper's evaluation:
* windows: one forward pass (a window of N tokens, s_out frames apart) per s_out-th frame,
  linear interpolation in between: output frames/s = windows/s * s_out;
* predict_sequence: the same result, with the per-frame spatial stage computed once per
  keyframe and shared by all windows; only frames that are keyframes for s_in need 2D
  poses, so the 2D detector runs on T / s_in frames.
MACs = FLOPs / 2 from torch.utils.flop_counter (attention included); times are the best of
--repeats runs.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


from common.keras_import import load_uplift_h5
from models import build_model
from models.uplift_upsample import PRESETS

SMALL = dict(num_frame=27, sequence_stride=3, mask_stride=[3, 6, 12], strides=[3, 3, 3],
             paddings=[[0, 0]] * 3, spatial_dim=8, temporal_dim=32, num_heads=2, spatial_depth=2,
             temporal_depth=2)

# Runs inside the official repository with TensorFlow: builds the official model, perturbs its
# weights, saves them as .h5, times inference on the given windows and stores the outputs.
TF_WORKER = r'''
import json, sys, time
import numpy as np, tensorflow as tf
import tensorflow.keras.layers as kl
args = json.loads(sys.argv[1])
# the official blocks pass themselves as `trainable` (accepted by the Keras of 2021, refused by
# Keras 2.15): read any non-boolean value as True, as the older Keras did
_layer_init = kl.Layer.__init__
def _tolerant_init(self, trainable=True, *rest, **kwargs):
    _layer_init(self, trainable if isinstance(trainable, bool) else True, *rest, **kwargs)
kl.Layer.__init__ = _tolerant_init
tf.config.threading.set_intra_op_parallelism_threads(args['threads'])
tf.config.threading.set_inter_op_parallelism_threads(1)
from common.net.uplift_upsample_transformer import UpliftUpsampleTransformer
c = args['config']
model = UpliftUpsampleTransformer(
    full_output=True, num_frames=c['num_frame'], num_keypoints=17, spatial_d_model=c['spatial_dim'],
    temporal_d_model=c['temporal_dim'], spatial_depth=c['spatial_depth'],
    temporal_depth=c['temporal_depth'], strides=c['strides'], paddings=c['paddings'],
    num_heads=c['num_heads'], mlp_ratio=c['mlp_ratio'], qkv_bias=True, attn_drop_rate=0.,
    drop_rate=0., drop_path_rate=[0.1, 0.1, 0.], has_strided_input=True,
    first_strided_token_attention_layer=1)
data = np.load(args['inputs'])
x, mask = tf.constant(data['keypoints']), tf.constant(data['stride_mask'])
model.build([tuple(x.shape), tuple(mask.shape)])
rng = np.random.default_rng(0)
for v in model.weights:
    v.assign(v + rng.normal(0, 0.05, v.shape).astype(np.float32))
model.save_weights(args['weights'])
step = tf.function(lambda k, m: model([k * tf.cast(m, tf.float32)[:, :, None, None], m], training=False))
seq, cen = step(x, mask)
for _ in range(args['warmup']):
    step(x, mask)[1].numpy()
seconds = cpu_seconds = float('inf')
for _ in range(args['repeats']):
    start, cpu_start = time.perf_counter(), time.process_time()
    step(x, mask)[1].numpy()
    seconds = min(seconds, time.perf_counter() - start)
    cpu_seconds = min(cpu_seconds, time.process_time() - cpu_start)
np.savez(args['outputs'], sequence=seq.numpy(), centre=cen.numpy(), seconds=seconds,
         cpu_seconds=cpu_seconds)
'''


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs):
    """FLOPs of the CPU fused attention kernel (not in the flop counter's own table)."""
    batch, heads, length, dim = query
    return 2 * batch * heads * length * key[-2] * (dim + value[-1])


def macs(fn):
    mapping = {}
    cpu_attention = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
    if cpu_attention is not None:
        mapping[cpu_attention] = _attention_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops() / 2


def seconds_per_call(fn, warmup, repeats, cpu=False):
    """Best of ``repeats`` timings, the least disturbed by other processes on the machine;
    with cpu=True also the best process CPU time (all threads), robust on a busy machine."""
    for _ in range(warmup):
        fn()
    best = best_cpu = float('inf')
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu_start)
    return (best, best_cpu) if cpu else best


def random_windows(model, batch, mask_stride, seed=0):
    generator = torch.Generator().manual_seed(seed)
    keypoints = torch.rand(batch, model.num_frame, model.num_joints, 2, generator=generator) * 1.6 - 0.8
    return keypoints, model.centred_stride_mask(batch, mask_stride)


@torch.no_grad()
def bench_config(name, options, args):
    model = build_model('uplift_upsample', **options).eval()
    s_out, field = model.sequence_stride, model.receptive_field
    params = sum(p.numel() for p in model.parameters())
    window = torch.zeros(1, field, model.num_joints, 2)
    sequence = torch.rand(1, args.frames, model.num_joints, 2) * 1.6 - 0.8
    window_macs = macs(lambda: model(window))
    print(f'\n== {name}: N={model.num_frame} tokens, s_out={s_out}, receptive field {field} frames, '
          f'{params:,} parameters')
    print(f'MACs per window (one forward, centre pose): {window_macs / 1e6:,.3f} M')
    print(f'MACs per output frame, windows every s_out frames + interpolation: '
          f'{window_macs / s_out / 1e6:,.3f} M')
    keypoints, mask = random_windows(model, args.batch, model.mask_stride[0])
    per_batch = seconds_per_call(lambda: model.lift(keypoints, mask), args.warmup, args.repeats)
    print(f'windows: {args.batch / per_batch:,.1f} windows/s (batch {args.batch}) '
          f'-> {args.batch * s_out / per_batch:,.1f} output frames/s')
    print(f'predict_sequence on a {args.frames}-frame video:')
    print('  s_in | 2D keyframes | MACs/output frame | output frames/s')
    for s_in in model.mask_stride:
        seq_macs = macs(lambda: model.predict_sequence(sequence, mask_stride=s_in))
        seconds = seconds_per_call(lambda: model.predict_sequence(sequence, mask_stride=s_in),
                                   min(args.warmup, 1), args.repeats)
        keyframes = len(range(0, args.frames, s_in))
        print(f'  {s_in:4d} | {keyframes:12d} | {seq_macs / args.frames / 1e6:15,.3f} M | '
              f'{args.frames / seconds:15,.1f}')
    if args.official_repo:
        compare_official(model, options, args)


def compare_official(model, options, args):
    """Time the official TensorFlow model on the same windows, with the same weights."""
    with tempfile.TemporaryDirectory() as tmp:
        keypoints, mask = random_windows(model, args.batch, model.mask_stride[0], seed=1)
        paths = {k: os.path.join(tmp, f'{k}.{ext}') for k, ext in
                 (('inputs', 'npz'), ('weights', 'h5'), ('outputs', 'npz'))}
        np.savez(paths['inputs'], keypoints=keypoints.numpy(), stride_mask=mask.numpy())
        config = {**PRESETS[options.get('preset') or 'h36m_351'],
                  **{k: v for k, v in options.items() if k != 'preset'}}
        config = json.loads(json.dumps(config))   # tuples -> lists
        worker = dict(paths, config=config, threads=torch.get_num_threads(), warmup=args.warmup,
                      repeats=args.repeats)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
        done = subprocess.run([args.tf_python, '-c', TF_WORKER, json.dumps(worker)], cwd=args.official_repo,
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print('official model: failed\n' + done.stderr[-2000:])
            return
        official = np.load(paths['outputs'])
        load_uplift_h5(model, paths['weights'])
        with torch.no_grad():
            sequence, centre = model.lift(keypoints, mask, official_order=True)
            seconds, cpu_seconds = seconds_per_call(
                lambda: model.lift(keypoints, mask, official_order=True), args.warmup, args.repeats, cpu=True)
        gap = max(np.abs(centre.numpy() - official['centre']).max(),
                  np.abs(sequence.numpy() - official['sequence']).max())
        tf_seconds, tf_cpu = float(official['seconds']), float(official['cpu_seconds'])
        print(f'official TensorFlow model, same weights and windows: {args.batch / tf_seconds:,.1f} windows/s, '
              f'{tf_cpu / args.batch * 1e3:.1f} CPU ms/window; this model {args.batch / seconds:,.1f} windows/s, '
              f'{cpu_seconds / args.batch * 1e3:.1f} CPU ms/window; speed ratio (this / official) '
              f'{tf_seconds / seconds:.2f} by wall time, {tf_cpu / cpu_seconds:.2f} by CPU time')
        print(f'max output difference {gap:.2e} (outputs up to {np.abs(official["sequence"]).max():.2f})')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--small', action='store_true', help='tiny configuration, short runs')
    parser.add_argument('--frames', type=int, default=None, help='video length for predict_sequence')
    parser.add_argument('--batch', type=int, default=None, help='windows per forward pass')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--official-repo', default=None, help='checkout of the official repository')
    parser.add_argument('--tf-python', default=None, help='Python interpreter that has TensorFlow')
    args = parser.parse_args(argv)
    if args.official_repo and not args.tf_python:
        parser.error('--official-repo needs --tf-python')
    if args.threads:
        torch.set_num_threads(args.threads)
    args.frames = args.frames or (120 if args.small else 1000)
    args.batch = args.batch or (8 if args.small else 64)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads, float32')
    configs = {'small': SMALL} if args.small else {'h36m_351': {'preset': 'h36m_351'},
                                                   'h36m_81': {'preset': 'h36m_81'}}
    for name, options in configs.items():
        bench_config(name, options, args)


if __name__ == '__main__':
    main()
