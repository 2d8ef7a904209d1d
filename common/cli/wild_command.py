"""From the parsed flags to a lifted video: the direct form (``render.py --input-keypoints FILE``)
and VideoPose3D's (``run.py -d custom -k NAME --render --viz-subject VIDEO``). Both read the
checkpoint, decide the 2D layout its model takes, and hand explicit values to common/in_the_wild.py."""
import os
from dataclasses import replace

from common import compat
from common.cli.command_line import check_conflicts, checkpoint_to_evaluate
from common.cli.model_setup import build_lifter
from common.data.datasets import H36M_SPEC
from common.data.records import find_data_file
from common.dist import DistInfo, select_device
from common.errors import UserError
from common.in_the_wild import WildInput, WildOutputs, describe, lift, prepare_video, write_outputs
from common.train.checkpoint import load_checkpoint, split_checkpoint

# Words in the names of the published in-the-wild files (pretrained_h36m_detectron_coco.bin,
# PSTMOS_no_refine_48_5137_in_the_wild.pth): they take COCO-17 2D.
COCO_FILE_WORDS = ('coco', 'wild')


def model_input_layout(checkpoint, path, flag=None, data_layout=None) -> str:
    """The 2D layout the checkpoint's model takes: our record; for an official file --input-layout,
    else the 2D file's layout (VideoPose3D's custom form feeds it as it is), else its name."""
    _, ours, meta = split_checkpoint(checkpoint)
    if ours:
        recorded = (meta.get('model_config') or {}).get('input_layout') or 'h36m_17'
        if flag and flag != recorded:
            raise UserError(f'--input-layout {flag}, but the checkpoint records {recorded}: drop --input-layout')
        return recorded
    if flag:
        return flag
    if data_layout:
        return data_layout
    name = os.path.basename(path).lower()
    return 'coco_17' if any(word in name for word in COCO_FILE_WORDS) else 'h36m_17'


def load_lifter(args, data_layout=None):
    """(model on its device in eval mode, its input layout) for the checkpoint the flags name."""
    path = checkpoint_to_evaluate(args)
    if path is None:
        raise UserError('no checkpoint given: use -c DIR --evaluate FILE (or --reload 1 --previous_dir FILE)')
    checkpoint = compat.read_model_file(path, args.trust_checkpoint)
    layout = model_input_layout(checkpoint, path, args.input_layout, data_layout)
    spec = replace(H36M_SPEC, input_layout=None if layout == 'h36m_17' else layout)
    model, _, config = build_lifter(args, spec, checkpoint)
    if model.is_pretraining:
        raise UserError(f"'{path}' is a masked-pretraining (stage I) model: lift with the stage II model")
    load_checkpoint(model, checkpoint)
    device = select_device(args.gpu, DistInfo())
    return model.to(device).eval(), model.input_layout, int(config.get('num_joints', 17))


def wild_outputs(args, default_stem=None) -> WildOutputs:
    """What to write: --viz-output (the animation), --viz-export (.npy), --export-json; the .npy and
    the JSON default to the animation's name."""
    stem = os.path.splitext(args.viz_output)[0] if args.viz_output else default_stem
    npy = args.viz_export or (stem + '.npy' if stem else None)
    json_path = args.export_json or (stem + '.json' if stem else None)
    if not (args.viz_output or npy or json_path):
        raise UserError('give --viz-output FILE (.mp4, .gif) and/or --viz-export FILE.npy, --export-json FILE')
    if args.viz_output and os.path.splitext(args.viz_output)[1].lower() == '.png':
        raise UserError('a lifted video is written as .gif or .mp4 (--viz-output NAME.mp4), not .png')
    return WildOutputs(npy=npy, json=json_path, animation=args.viz_output, video=args.viz_video,
                       skip=args.viz_skip, limit=args.viz_limit, downsample=args.viz_downsample,
                       size=args.viz_size, bitrate=args.viz_bitrate)


def run_job(args, inp: WildInput, data_layout=None):
    """Read and check everything, then lift and write: a bad input writes nothing."""
    outputs = wild_outputs(args)
    if outputs.animation:
        from common.visualization import ffmpeg_path, output_paths
        if any(p.lower().endswith('.mp4') for p in output_paths(outputs.animation)):
            ffmpeg_path()  # fail before the model runs
    model, layout, num_joints = load_lifter(args, data_layout)
    video = prepare_video(inp, layout, num_joints)
    print(f'INFO: {describe(video)}')
    prediction = lift(model, video, flip=args.test_time_augmentation)
    written = write_outputs(video, prediction, outputs)
    print(f'INFO: {len(prediction)} 3D poses written to {", ".join(written)}')
    return written


def wild_input(args, path, video_name=None) -> WildInput:
    return WildInput(path, args.keypoints_format, args.person, video_name, args.viz_video, args.video_size,
                     args.video_fps, args.model_fps, args.viz_skip)


def run_direct(args):
    """render.py --input-keypoints FILE ..."""
    check_conflicts(args)
    return run_job(args, wild_input(args, args.input_keypoints, args.viz_subject))


def run_custom(args, rendering=False):
    """run.py -d custom -k NAME --render --viz-subject VIDEO --viz-action custom --viz-camera 0 ...
    (``rendering``: render.py, where --render goes without saying), or --input-keypoints FILE."""
    check_conflicts(args)
    if args.input_keypoints:
        return run_direct(args)
    if args.dataset != 'custom' or not (args.render or rendering):
        raise UserError('-d custom holds 2D only (your own videos): add --render --viz-subject VIDEO '
                        '--viz-output FILE; --render renders -d custom only (for a dataset stream use render.py)')
    if args.viz_action not in (None, 'custom') or args.viz_camera != 0:
        raise UserError('a custom video has the action custom and camera 0 only (--viz-action custom --viz-camera 0)')
    path = find_data_file(args.root_path, f'data_2d_custom_{args.keypoints}.npz',
                          "make it with VideoPose3D's data/prepare_data_2d_custom.py, or lift the detector's file "
                          "directly: python render.py --input-keypoints FILE")
    inp = replace(wild_input(args, path, args.viz_subject), tool='videopose3d')
    return run_job(args, inp, data_layout='coco_17')
