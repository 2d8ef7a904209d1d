"""Lifting a user's own video: from a detector's keypoint file to 3D poses, their files and an overlay.

    video = prepare_video(WildInput('alphapose-results.json', video='clip.mp4'), model.input_layout)
    poses = lift(model, video)                           # [T, 17, 3] camera frame, metres
    write_outputs(video, poses, WildOutputs(npy='clip.npy', json='clip.json', animation='clip.mp4'))

Steps: read (common/data/wild/readers.py), one person over every frame with the gaps filled
(tracks.py), the size check, the conversion to the model's input layout (layouts.py: none for a
model trained on COCO detections, the published formulas for a Human3.6M-layout model), the
normalisation by the video's width (x in [-1, 1]), an optional resampling to the model's frame rate
and back, then the lifter with the flip test (the input layout's pairs on the 2D, the output's on the
3D). The JSON holds the poses in a z-up world frame with the floor at z = 0, as VideoPose3D and
P-STMO post-process their in-the-wild output (a Human3.6M camera's rotation, the lowest joint of the
video at 0).
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from common.data.camera import camera_to_world, load_h36m_cameras
from common.data.pose_codec import normalize_screen_coordinates
from common.data.skeleton import H36M_17, LAYOUTS
from common.data.wild.layouts import MODEL_INPUT_PAIRS, check_model_layout, convert_for_model
from common.data.wild.readers import read_keypoints
from common.data.wild.tracks import check_video_size, person_track, resample
from common.errors import UserError
from common.eval.inference import predict_sequence


@dataclass
class WildInput:
    """keypoints -- file or OpenPose folder; tool -- 'auto' or a reader name; person -- track id
    (None: the track in most frames, or each frame's best person); video_name -- the video of a
    VideoPose3D custom file; video -- the video file (size, frame rate, overlay); video_size --
    (width, height) px; video_fps / model_fps -- resample from the video's rate to the model's
    before lifting (and back), when both are known and differ; video_skip -- video frames before the
    keypoints' first (render.py --viz-skip)."""
    keypoints: str
    tool: str = 'auto'
    person: Optional[int] = None
    video_name: Optional[str] = None
    video: Optional[str] = None
    video_size: Optional[Tuple[int, int]] = None
    video_fps: Optional[float] = None
    model_fps: Optional[float] = None
    video_skip: int = 0


@dataclass
class WildVideo:
    """pose2d -- [T, J, 2] normalised, the model's input layout; pixels -- the same in pixels;
    confidence -- [T, J] (0 where filled); layout -- the model's input layout; source_layout -- the
    file's; filled_frames -- frames without the person; fps -- the video's, if known."""
    pose2d: np.ndarray
    pixels: np.ndarray
    confidence: np.ndarray
    layout: str
    source_layout: str
    image_size: Tuple[int, int]
    filled_frames: List[int]
    person: Optional[int]
    tool: str
    path: str
    fps: Optional[float] = None
    model_fps: Optional[float] = None
    notes: List[str] = field(default_factory=list)

    def __len__(self):
        return len(self.pose2d)


@dataclass
class WildOutputs:
    """npy -- [T, 17, 3] camera frame, metres (VideoPose3D's --viz-export); json -- per frame and
    joint, world frame; animation -- .gif / .mp4 / no extension (both); video -- drawn under the 2D;
    the render settings."""
    npy: Optional[str] = None
    json: Optional[str] = None
    animation: Optional[str] = None
    video: Optional[str] = None
    skip: int = 0
    limit: int = -1
    downsample: int = 1
    size: float = 5.0
    bitrate: int = 3000


def video_properties(path) -> Tuple[Tuple[int, int], Optional[float], int]:
    """((width, height), frames/s or None, frames) of a video file (the frames are counted by
    decoding it once)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError('reading a video needs imageio-ffmpeg: pip install imageio-ffmpeg') from None
    if not os.path.isfile(path):
        raise UserError(f"video '{path}' does not exist")
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        reader.close()
        frames = imageio_ffmpeg.count_frames_and_secs(path)[0]
    except (OSError, RuntimeError, StopIteration) as err:
        raise UserError(f"'{path}' is not a readable video: {str(err).splitlines()[0] if str(err) else ''}") from None
    return tuple(int(v) for v in meta['size']), meta.get('fps'), int(frames)


def image_size(inp: WildInput, file_size, video_size) -> Tuple[Tuple[int, int], str]:
    """The frame size the keypoints are in, and where it comes from; sources that disagree are an error."""
    given = [(s, what) for s, what in ((inp.video_size, '--video-size'), (file_size, f"'{inp.keypoints}'"),
                                       (video_size, f"video '{inp.video}'")) if s is not None]
    if not given:
        raise UserError(f"the frame size of '{inp.keypoints}' is unknown: give the video (--viz-video FILE) or "
                        f"--video-size WxH")
    size, source = given[0]
    for other, what in given[1:]:
        if tuple(other) != tuple(size):
            raise UserError(f'{source} says {size[0]}x{size[1]} but {what} is {other[0]}x{other[1]}: the video '
                            f'does not match the keypoints (give the video they were detected in)')
    return tuple(size), source


def prepare_video(inp: WildInput, model_layout: str, num_joints: int = 17) -> WildVideo:
    """Read, select, fill, check and convert ``inp`` for a model taking ``model_layout`` 2D."""
    check_model_layout(model_layout)
    if num_joints != LAYOUTS[model_layout].num_joints:
        raise UserError(f'the model takes {num_joints} joints per frame; keypoints of every format are converted '
                        f'to the {LAYOUTS[model_layout].num_joints} of {model_layout}: use a 17-joint model')
    keypoints = read_keypoints(inp.keypoints, inp.tool, inp.video_name)
    video_size, video_fps, video_frames = video_properties(inp.video) if inp.video else (None, None, None)
    if video_frames is not None:
        match_video_length(keypoints, video_frames - inp.video_skip, inp)
    if inp.model_fps and not (inp.video_fps or video_fps):
        raise UserError('resampling to the model\'s frame rate (--model-fps) needs the video\'s: give --viz-video '
                        'or --video-fps')
    track = person_track(keypoints, inp.person)
    size, source = image_size(inp, keypoints.image_size, video_size)
    check_video_size(track, size, inp.keypoints, source)
    points = np.concatenate([track.keypoints, track.confidence[..., None]], -1)
    points = convert_for_model(points, track.layout, model_layout)
    pixels = points[..., :2].astype(np.float32)
    return WildVideo(normalize_screen_coordinates(pixels, *size), pixels, points[..., 2].astype(np.float32),
                     model_layout, track.layout, size, track.filled_frames, track.person, keypoints.tool,
                     inp.keypoints, inp.video_fps or video_fps, inp.model_fps, list(keypoints.notes))


def match_video_length(keypoints, frames: int, inp: WildInput):
    """Keypoints of more frames than the video are not its own; an AlphaPose file, where frames without
    anybody are absent, ends at its last detection: the video's last frames are added, empty."""
    if len(keypoints.frames) > frames:
        raise UserError(f"'{inp.keypoints}' has keypoints for {len(keypoints.frames)} frames, but the video "
                        f"'{inp.video}' has {frames}{' after --viz-skip' if inp.video_skip else ''}: give the video "
                        f"the keypoints were detected in")
    if keypoints.tool == 'alphapose':
        keypoints.frames += [[] for _ in range(frames - len(keypoints.frames))]


def lift(model, video: WildVideo, flip: bool = True, max_batch: int = 1024) -> np.ndarray:
    """[T, 17, 3] camera-frame metres, root-relative, one pose per frame of the video. A model taking
    three channels per joint (VideoPose3D trained with the detector's probability) gets the confidence."""
    pose2d = video.pose2d
    if model.in_features == 3:
        pose2d = np.concatenate([pose2d, video.confidence[..., None]], -1)
    retimed = bool(video.model_fps and video.fps and abs(video.model_fps - video.fps) > 1e-6)
    if retimed:
        pose2d = resample(pose2d, video.fps, video.model_fps)
    pairs = MODEL_INPUT_PAIRS[video.layout] if flip else None
    device = next((p.device for p in model.parameters()), None)
    prediction = predict_sequence(model, torch.from_numpy(pose2d).float().to(device), pairs, max_batch,
                                  output_flip_pairs=H36M_17.flip_pairs).float().cpu().numpy()
    if retimed:
        prediction = resample(prediction, video.model_fps, video.fps)[:len(video)]
    return prediction


# The rotation VideoPose3D and P-STMO give their in-the-wild output (Human3.6M S1, camera 0).
def world_poses(prediction: np.ndarray) -> np.ndarray:
    """[T, J, 3] camera frame -> z-up world frame, the lowest joint of the video at z = 0."""
    orientation = load_h36m_cameras()['S1'][0].orientation
    world = camera_to_world(prediction.astype(np.float32), orientation, np.zeros(3, np.float32))
    world[..., 2] -= world[..., 2].min()
    return world


def poses_json(video: WildVideo, world: np.ndarray) -> Dict:
    """The JSON document of the 3D poses: per frame, per joint name, world metres."""
    names = H36M_17.joint_names
    # rounded in float64: float32 values would print with all their binary digits
    keypoints_2d = np.concatenate([video.pixels, video.confidence[..., None]], -1).astype(np.float64)
    keypoints_2d = keypoints_2d.round(3).tolist()
    return {
        'source': video.path, 'tool': video.tool, 'keypoint_layout': video.source_layout,
        'model_input_layout': video.layout, 'person': video.person, 'filled_frames': video.filled_frames,
        'image_size': list(video.image_size), 'fps': video.fps, 'joint_names': list(names), 'unit': 'm',
        'coordinates': 'world: z up, floor (lowest joint of the video) at z = 0, root-relative poses '
                       'rotated by the Human3.6M camera VideoPose3D uses for custom videos',
        'keypoint_names': list(LAYOUTS[video.layout].joint_names),
        'keypoints_2d_note': 'the model\'s 2D input: x, y in pixels, confidence (0 where filled)',
        'frames': [{'frame': t, 'joints': dict(zip(names, pose)), 'keypoints_2d': keypoints_2d[t]}
                   for t, pose in enumerate(world.astype(np.float64).round(5).tolist())]}


def write_outputs(video: WildVideo, prediction: np.ndarray, outputs: WildOutputs, progress: bool = True) -> List[str]:
    """Write the .npy, the JSON and the animation asked for; returns the paths written."""
    written = []
    world = world_poses(prediction)
    if outputs.npy:
        _parent(outputs.npy)
        np.save(outputs.npy, prediction.astype(np.float32))
        written.append(outputs.npy)
    if outputs.json:
        _parent(outputs.json)
        text = json.dumps(poses_json(video, world))  # one write: json.dump writes piece by piece
        with open(outputs.json, 'w') as handle:
            handle.write(text)
        written.append(outputs.json)
    if outputs.animation:
        written += render(video, world, outputs, progress)
    return written


def render(video: WildVideo, world: np.ndarray, outputs: WildOutputs, progress: bool = True) -> List[str]:
    """The overlay: the 2D over the video (or a blank frame of its size) next to the 3D."""
    from common import visualization as viz
    left, right = (set(side) for side in MODEL_INPUT_PAIRS[video.layout])
    sides = tuple('left' if j in left else 'right' if j in right else 'centre' for j in range(video.pixels.shape[1]))
    scene = viz.Scene(video.pixels, {'Prediction': world}, H36M_17, sides, video.image_size, viz.FIXED_AZIMUTH,
                      video.fps or 30.0, 0, keypoint_bones=video.layout == 'h36m_17')
    return viz.render_animation(scene, outputs.animation, video=outputs.video, skip=outputs.skip,
                                limit=outputs.limit, downsample=outputs.downsample, size=outputs.size,
                                bitrate=outputs.bitrate, progress=progress)


def _parent(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def describe(video: WildVideo) -> str:
    """One line about what was read."""
    who = f'person {video.person}' if video.person is not None else "each frame's highest-scoring person"
    filled = (f'{len(video.filled_frames)} frames without the person filled by interpolation '
              f'({_ranges(video.filled_frames)})' if video.filled_frames else 'no frame to fill')
    layout = (video.source_layout if video.source_layout == video.layout
              else f'{video.source_layout} converted to {video.layout}')
    rate = f', {video.fps:g} fps' if video.fps else ''
    retimed = f' (lifted at {video.model_fps:g} fps)' if video.model_fps and video.fps != video.model_fps else ''
    notes = ''.join(f', {note}' for note in video.notes)
    return (f"{video.tool} keypoints of '{video.path}'{notes}: {len(video)} frames{rate}{retimed}, {who}, {layout}, "
            f"{video.image_size[0]}x{video.image_size[1]} px; {filled}")


def _ranges(frames, most=6):
    parts, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(str(start) if start == f else f'{start}-{f}')
            start = None
    return ', '.join(parts[:most]) + (', ...' if len(parts) > most else '')
