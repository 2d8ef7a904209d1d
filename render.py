#!/usr/bin/env python
"""Render 3D predictions next to the 2D input and the ground truth: GIF, MP4 or a PNG grid.

    python render.py -d h36m -k cpn_ft_h36m_dbb --model retnet --joint-related --uncausal --chunk-size 243 \
        -c checkpoint --evaluate PoseRetNet_h36m_cpn_243f.pth --viz-output output/retnet_cpn_243f \
        --viz-subject S9 --viz-action 'Photo 1' --viz-limit 500            # writes .gif and .mp4
    python render.py -d synthetic --viz-predictions poses.npy --viz-subject S9 --viz-action 'Walking 1' \
        --viz-output frames.png                                             # saved poses, no model
    python render.py -c checkpoint --evaluate pretrained_h36m_detectron_coco.bin --viz-custom \
        data/data_2d_custom_myvideos.npz --viz-subject clip.mp4 --viz-video clip.mp4 --viz-output clip.mp4
    python render.py --input-keypoints alphapose-results.json --viz-video clip.mp4 -c checkpoint \
        --evaluate best.pt --viz-output clip_3d.mp4              # a detector's file: also clip_3d.npy, .json
"""
import os
import sys
from dataclasses import replace

import numpy as np
import torch

from common import visualization as viz
from common.cli.arguments import build_parser
from common.cli.command_line import check_conflicts
from common.data.datasets import H36M_SPEC, read_custom_keypoints, read_predictions
from common.dist import DistInfo, select_device
from common.errors import UserError, exit_status
from common.eval.inference import predict_sequence
from common.cli.inference_flags import prepare_inference
from common.cli.runner import ScriptPreset, load_data, load_model_for_inference
from common.cli.wild_command import run_custom

PRESET = ScriptPreset(script='render.py', dataset='h36m',
                      description='Render a lifter\'s 3D predictions as a GIF, an MP4 or a PNG grid of frames.')


def pick_sequence(args):
    """(Sequence, DatasetSpec, draw 2D bones) for the --viz-* flags: a custom 2D file's video
    (Human3.6M skeleton, no ground truth), or a dataset stream."""
    if args.viz_custom:
        sequences, (left, right), layout = read_custom_keypoints(args.viz_custom)
        spec = replace(H36M_SPEC, kps_left=left, kps_right=right, input_layout='coco_17' if layout == 'coco' else None)
        keypoint_bones = layout != 'coco'
    else:
        train, test, spec, _ = load_data(args, PRESET)
        sequences, keypoint_bones = test + train, True
    return viz.find_sequence(sequences, args.viz_subject, args.viz_action, args.viz_camera, spec), spec, keypoint_bones


def predict(args, sequence, spec):
    """[T, J, 3] camera-frame predictions: saved ones, or the checkpoint's, flip-averaged
    (the 2D mirrored with its keypoint pairs, the 3D back with the skeleton's)."""
    if args.viz_predictions:
        return read_predictions(args.viz_predictions, spec.num_joints)
    device = select_device(args.gpu, DistInfo())
    model, _ = prepare_inference(args, load_model_for_inference(args, spec, device))
    pose2d = torch.from_numpy(sequence.pose2d).float()[None].to(device)
    joints = list(spec.skeleton.joints_left), list(spec.skeleton.joints_right)
    prediction = predict_sequence(model, pose2d, spec.flip_pairs if args.test_time_augmentation else None,
                                  output_flip_pairs=joints)
    return prediction[0].float().cpu().numpy()


def run(args):
    if args.input_keypoints or args.dataset == 'custom':  # one's own video: a detector's file, or -d custom
        return run_custom(args, rendering=True)
    check_conflicts(args)
    if not args.viz_output and not args.export:
        raise UserError('give --viz-output FILE (.gif, .mp4, .png, or no extension for both .gif and .mp4)')
    paths = viz.output_paths(args.viz_output) if args.viz_output else []
    if any(p.lower().endswith('.mp4') for p in paths):
        viz.ffmpeg_path()  # fail before the model runs
    if args.export:  # write the model's files and stop: no sequence to render
        spec = H36M_SPEC if args.viz_custom else load_data(args, PRESET)[2]
        prepare_inference(args, load_model_for_inference(args, spec, select_device(args.gpu, DistInfo())))
        return
    sequence, spec, keypoint_bones = pick_sequence(args)
    prediction = predict(args, sequence, spec)
    if args.viz_export:
        os.makedirs(os.path.dirname(os.path.abspath(args.viz_export)), exist_ok=True)
        np.save(args.viz_export, prediction)
        print(f'INFO: predicted 3D poses {list(prediction.shape)} (camera frame, metres) saved to {args.viz_export}')
    scene = viz.scene_from_sequence(sequence, prediction, spec, ground_truth=not args.viz_no_ground_truth,
                                    keypoint_bones=keypoint_bones)
    if paths[0].lower().endswith('.png'):
        frames = viz.render_frame_grid(scene, paths[0], limit=args.viz_limit, video=args.viz_video,
                                       skip=args.viz_skip, size=args.viz_size / 2)
        print(f'INFO: frames {frames} of {sequence.subject} {sequence.action} drawn to {paths[0]}')
        return
    viz.render_animation(scene, args.viz_output, video=args.viz_video, skip=args.viz_skip, limit=args.viz_limit,
                         downsample=args.viz_downsample, size=args.viz_size, bitrate=args.viz_bitrate)
    print(f'INFO: {sequence.subject} {sequence.action} camera {sequence.camera} rendered to {", ".join(paths)}')


def main(argv):
    args = build_parser(PRESET.script, PRESET.description, PRESET.dataset, viz=True).parse_args(argv)
    return exit_status(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
