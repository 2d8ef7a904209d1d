"""The flags of lifting one's own video: the direct form (render.py --input-keypoints FILE) and
VideoPose3D's (run.py -d custom -k NAME --render); in their own group, added to every parser."""
import argparse
import re

from common.cli.flag_types import COUNT, POSITIVE

KEYPOINT_FORMATS = ('auto', 'alphapose', 'openpose', 'mmpose', 'detectron2', 'videopose3d')


def video_size(text):
    """argparse ``type=``: 'WIDTHxHEIGHT' in pixels -> (width, height)."""
    match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got '{text}'")
    return int(match.group(1)), int(match.group(2))


def add_wild_arguments(parser):
    g = parser.add_argument_group(
        'in the wild (your own video: render.py --input-keypoints FILE, or run.py -d custom -k NAME --render)')
    g.add_argument('--input-keypoints', default=None, metavar='FILE',
                   help='lift this 2D keypoint file of a video: AlphaPose alphapose-results.json, an OpenPose '
                        '--write_json folder, an MMPose prediction JSON, a Detectron2 infer_video_d2.py .npz or a '
                        'VideoPose3D data_2d_custom_*.npz (not -k, which names a dataset\'s 2D source)')
    g.add_argument('--keypoints-format', choices=KEYPOINT_FORMATS, default='auto',
                   help='the tool that wrote --input-keypoints (default: auto, told from the content)')
    g.add_argument('--person', type=COUNT, default=None, metavar='ID',
                   help='track id of the person to lift (tracked AlphaPose files; default: the track in most '
                        'frames; untracked files: the highest-scoring person of each frame)')
    g.add_argument('--video-size', type=video_size, default=None, metavar='WxH',
                   help='frame size in pixels the keypoints are in (default: from the keypoint file, else from '
                        '--viz-video); 1000x1002 reproduces P-STMO\'s fixed in-the-wild normalisation')
    g.add_argument('--video-fps', type=POSITIVE, default=None, metavar='FPS',
                   help='frame rate of the video (default: read from --viz-video)')
    g.add_argument('--model-fps', type=POSITIVE, default=None, metavar='FPS',
                   help='resample the 2D to this rate before lifting and the 3D back to the video\'s, e.g. 50 for '
                        'a model trained on Human3.6M (default: no resampling; -tds changes the frame step instead)')
    g.add_argument('--input-layout', choices=['coco_17', 'h36m_17'], default=None,
                   help='2D layout an official checkpoint takes (default: our checkpoint\'s record; official '
                        'files: coco_17 when the file name has coco or wild, else h36m_17)')
    g.add_argument('--export-json', default=None, metavar='FILE',
                   help='the 3D poses as JSON, per frame and joint, world frame, floor at z = 0 (default: next to '
                        '--viz-output, NAME.json)')
    g.add_argument('--render', action='store_true',
                   help='run.py (VideoPose3D spelling): render the --viz-subject video of -d custom -k NAME')
