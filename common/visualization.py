"""Figures: training curves, pose animations (GIF / MP4) and frame grids.

A :class:`Scene` holds what is drawn: the 2D input in pixels and one or more 3D pose sources
in a z-up display frame (metres). ``render_animation`` writes it as a GIF or an MP4 and
``render_frame_grid`` as a PNG of a few frames; both draw with the same two panel classes,
whose artists are created once and then updated in place frame after frame.
"""
import io
import os
import shutil
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FFMpegWriter, PillowWriter  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.ticker import MultipleLocator, NullFormatter  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Line3DCollection  # noqa: E402
from PIL import Image  # noqa: E402

from common.data.camera import camera_to_world, load_h36m_cameras  # noqa: E402
from common.data.pose_codec import image_coordinates  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.data.skeleton import Skeleton  # noqa: E402

SIDE_COLOURS = {'left': '#1f5fd6', 'right': '#e3342f', 'centre': '#303030'}
ELEVATION = 15.0
FIXED_AZIMUTH = -70.0  # viewer 20 degrees to the right of a camera looking along +y
BODY_SPAN = 1.7  # metres of world shown around the root, at least
DPI = 100
# Camera frame (x right, y down, z forward) -> display frame (x right, y forward, z up).
CAMERA_TO_DISPLAY = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32)
ANIMATION_FORMATS = ('.gif', '.mp4')
GIF_COLOURS = 32  # exact colours of the first frame kept: enough for lines, a smaller file than 256


def plot_training_curves(history, path):
    """Training loss and test score per epoch. history -- list of dicts with 'epoch',
    'train_loss', 'test' (and optionally 'test_ema')."""
    epochs = [h['epoch'] for h in history]
    fig, (ax_loss, ax_test) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], color='tab:blue')
    ax_loss.set(xlabel='epoch', ylabel='training loss', title='Training')
    ax_test.plot(epochs, [h['test'] for h in history], color='tab:orange', label='model')
    if any(h.get('test_ema') is not None for h in history):
        ax_test.plot(epochs, [h.get('test_ema') for h in history], color='tab:green', label='EMA')
        ax_test.legend()
    ax_test.set(xlabel='epoch', ylabel='test score (mm)', title='Evaluation')
    for ax in (ax_loss, ax_test):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- what is drawn

@dataclass
class Scene:
    """keypoints -- [T, J2, 2] 2D input in pixels; poses -- title -> [T, J, 3] display frame
    (z up, metres); keypoint_sides -- 'left' / 'right' / 'centre' per 2D joint;
    keypoint_bones -- draw the skeleton's bones in 2D (False when the 2D layout differs,
    e.g. COCO); image_size -- (width, height) px; root_joint -- joint the 3D axes follow
    (None: the joints' mean)."""
    keypoints: np.ndarray
    poses: Dict[str, np.ndarray]
    skeleton: Skeleton
    keypoint_sides: Tuple[str, ...]
    image_size: Tuple[int, int]
    azimuth: float = FIXED_AZIMUTH
    fps: float = 50.0
    root_joint: Optional[int] = 0
    keypoint_bones: bool = True

    def __len__(self):
        return min([len(self.keypoints)] + [len(p) for p in self.poses.values()])


def camera_of(spec, sequence):
    """The Human3.6M camera of ``sequence`` (orientation, translation and the azimuth
    VideoPose3D shows it from), or None for other cameras."""
    cameras = (load_h36m_cameras().get(sequence.subject) or []) if spec.skeleton.name == 'h36m_17' else []
    camera = cameras[sequence.camera] if sequence.camera < len(cameras) else None
    return camera if camera is not None and camera.orientation is not None else None


def to_display(pose, camera=None, has_trajectory=True):
    """[T, J, 3] camera frame, metres -> z-up display frame: the world frame of ``camera``
    when known, else CAMERA_TO_DISPLAY. Poses without a trajectory or a known camera height
    are lifted so that their lowest joint over the sequence touches z = 0."""
    pose = np.asarray(pose, np.float32)
    if camera is not None:
        out = camera_to_world(pose, camera.orientation,
                              camera.translation if has_trajectory else np.zeros(3, np.float32))
    else:
        out = pose @ CAMERA_TO_DISPLAY.T
    if not (has_trajectory and camera is not None):
        out[..., 2] -= out[..., 2].min()
    return out


def scene_from_sequence(sequence, prediction, spec, ground_truth=True, keypoint_bones=True) -> Scene:
    """The scene of one stream: its 2D input, ``prediction`` ([T, J, 3] camera frame, or None)
    placed on the ground-truth trajectory when the stream has one, and its ground truth."""
    root = spec.root_joint
    camera = camera_of(spec, sequence)
    gt = sequence.pose3d
    trajectory = sequence.trajectory[:, None] if sequence.trajectory is not None else None
    poses = {}
    if prediction is not None:
        n = min(len(prediction), len(sequence))
        pred = prediction[:n] - (prediction[:n, root:root + 1] if root is not None else 0)
        poses['Prediction'] = to_display(pred if trajectory is None else pred + trajectory[:n], camera,
                                         trajectory is not None)
    if ground_truth and gt is not None:
        absolute = gt if trajectory is None else gt + trajectory
        poses['Ground truth'] = to_display(absolute, camera, trajectory is not None)
    if not poses:
        raise UserError('nothing to draw: no prediction and no ground truth')
    left, right = set(spec.kps_left), set(spec.kps_right)
    sides = tuple('left' if j in left else 'right' if j in right else 'centre'
                  for j in range(sequence.pose2d.shape[1]))
    return Scene(image_coordinates(sequence.pose2d, *sequence.image_size), poses, spec.skeleton, sides,
                 tuple(sequence.image_size), camera.azimuth if camera else FIXED_AZIMUTH, spec.fps, root,
                 keypoint_bones)


# ----------------------------------------------------------------------------- input files

def _choose(value, choices, flag, what):
    """``value`` if among ``choices``; the only choice when ``value`` is None; else a UserError."""
    if value is None and len(choices) == 1:
        return choices[0]
    if value not in choices:
        listed = ', '.join(repr(c) for c in choices)
        raise UserError(f"give {flag}, one of: {listed}" if value is None else
                        f"{what} {value!r} not found; choose {flag} from: {listed}")
    return value


def find_sequence(sequences, subject, action, camera, spec):
    """The stream (subject, action, camera) of ``sequences``, or a one-line UserError that lists
    the choices. 3DHP streams are named by their subject (TS1..TS6): the action may be omitted."""
    subject = _choose(subject, sorted({s.subject for s in sequences}), '--viz-subject', 'subject')
    mine = [s for s in sequences if s.subject == subject]
    actions = list(dict.fromkeys(s.action for s in mine))
    if action is None and spec.evaluator == 'mpi_inf_3dhp':
        action = actions[0]
    action = _choose(action, actions, '--viz-action', f'action of {subject}')
    cameras = {s.camera: s for s in mine if s.action == action}
    if camera not in cameras:
        raise UserError(f"{subject}/{action} has no camera {camera}; choose --viz-camera from: "
                        f"{', '.join(str(c) for c in sorted(cameras))}")
    return cameras[camera]


def open_video(path, indices, skip=0):
    """(frames/s, iterator over the [H, W, 3] uint8 frames of ``path`` at the increasing
    ``indices``, counted after the first ``skip`` frames; it ends early with the video)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError('--viz-video needs imageio-ffmpeg: pip install imageio-ffmpeg') from None
    if not os.path.isfile(path):
        raise UserError(f"video '{path}' does not exist")
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta['size']

    def frames():
        wanted, last = set(indices), max(indices, default=-1)
        try:
            for index, raw in enumerate(reader, -skip):
                if index in wanted:
                    yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                if index >= last:
                    break
        finally:
            reader.close()
    return meta.get('fps'), frames()


# ----------------------------------------------------------------------------- panels

def _title(ax, text, size):
    """A title as a plain text artist: Axes titles re-measure the axes on every draw."""
    place = ax.text2D if hasattr(ax, 'text2D') else ax.text
    place(0.5, 1.0, text, transform=ax.transAxes, ha='center', va='bottom', fontsize=max(8.0, 2.4 * size))


class KeypointPanel:
    """The 2D input: bones and joints over the video frame, or over a blank image of the
    camera's resolution."""

    def __init__(self, ax, scene: Scene, title, size=5.0):
        self.ax, self.scene, self.image = ax, scene, None
        width, height = scene.image_size
        ax.set(xlim=(0, width), ylim=(height, 0), aspect='equal', xticks=[], yticks=[])
        _title(ax, title, size)
        self.pairs = np.array(scene.skeleton.bones() if scene.keypoint_bones else [], int).reshape(-1, 2)
        self.bones = ax.add_collection(LineCollection(
            [], colors=[SIDE_COLOURS[s] for s in scene.skeleton.bone_side()], linewidths=0.5 * size))
        self.joints = [(np.array([j for j, s in enumerate(scene.keypoint_sides) if s == side], int),
                        ax.plot([], [], 'o', color=SIDE_COLOURS[side], ms=0.9 * size, mec='white',
                                mew=0.15 * size, zorder=3)[0]) for side in SIDE_COLOURS]

    def update(self, t, image=None):
        if image is not None:
            if self.image is None:
                height, width = image.shape[:2]
                self.image = self.ax.imshow(image, extent=(0, width, height, 0), zorder=0)
                self.ax.set(xlim=(0, width), ylim=(height, 0))
            else:
                self.image.set_data(image)
        keypoints = self.scene.keypoints[t]
        self.bones.set_segments(keypoints[self.pairs])
        for joints, line in self.joints:
            line.set_data(keypoints[joints, 0], keypoints[joints, 1])


class PosePanel:
    """One 3D pose source, seen from a fixed angle, the axes following its root so that the
    body stays in view; the vertical range is fixed from the floor up."""

    def __init__(self, ax, scene: Scene, title, size=5.0):
        self.ax, self.scene = ax, scene
        self.pose = scene.poses[title]
        floor, top = float(self.pose[..., 2].min()), float(self.pose[..., 2].max())
        self.span = max(BODY_SPAN, 1.05 * (top - floor))
        ax.view_init(elev=ELEVATION, azim=scene.azimuth)
        ax.set_box_aspect((1, 1, 1), zoom=1.15)
        ax.set_zlim3d(floor, floor + self.span)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MultipleLocator(0.5))
            axis.set_major_formatter(NullFormatter())
        _title(ax, title, size)
        self.pairs = np.array(scene.skeleton.bones(), int)
        self.bones = ax.add_collection3d(Line3DCollection(
            [], colors=[SIDE_COLOURS[s] for s in scene.skeleton.bone_side()], linewidths=0.5 * size), autolim=False)

    def update(self, t, image=None):
        pose = self.pose[t]
        root = pose[self.scene.root_joint] if self.scene.root_joint is not None else pose.mean(0)
        half = self.span / 2
        self.ax.set(xlim3d=(root[0] - half, root[0] + half), ylim3d=(root[1] - half, root[1] + half))
        self.bones.set_segments(pose[self.pairs])


def new_figure(rows, columns, size):
    """A white figure of rows x columns panels of ``size`` inches, even pixel dimensions
    (H.264 needs them)."""
    width, height = (2 * round(size * n * DPI / 2) / DPI for n in (columns, rows))
    return plt.figure(figsize=(width, height), dpi=DPI, facecolor='white')


def add_panels(fig, scene: Scene, size=5.0):
    """One row: the 2D input, then one 3D panel per pose source. Returns update(t, image=None)."""
    columns = 1 + len(scene.poses)
    panels = [KeypointPanel(fig.add_subplot(1, columns, 1), scene, 'Input', size)]
    panels += [PosePanel(fig.add_subplot(1, columns, 2 + i, projection='3d'), scene, title, size)
               for i, title in enumerate(scene.poses)]
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.05)
    return lambda t, image=None: [panel.update(t, image) for panel in panels]


# ----------------------------------------------------------------------------- writers

def output_paths(output):
    """[output] for .gif / .mp4 / .png; [output.gif, output.mp4] for a name without one."""
    if os.path.splitext(output)[1].lower() in ANIMATION_FORMATS + ('.png',):
        return [output]
    return [output + ext for ext in ANIMATION_FORMATS]


def ffmpeg_path():
    """The ffmpeg binary MP4s are written with: imageio-ffmpeg's, else one on PATH."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        if shutil.which('ffmpeg') is None:
            raise UserError('MP4 output needs ffmpeg: pip install imageio-ffmpeg (or write a .gif)') from None
        return shutil.which('ffmpeg')


def _rgb(keys):
    """Colours packed as R | G << 8 | B << 16 -> [N, 3] int."""
    return np.stack([keys & 255, keys >> 8 & 255, keys >> 16 & 255], -1).astype(int)


class PaletteGifWriter(PillowWriter):
    """GIF frames kept as palette images (a third of the memory of RGB ones) on one palette:
    the bone colours and the first frame's most frequent colours, exact (white stays white);
    other colours go to the nearest, looked up once. ~15x faster than an adaptive palette per
    frame, and smaller files. (Frames over a video need their own palettes: PillowWriter.)"""
    palette = None

    def grab_frame(self, **savefig_kwargs):
        buffer = io.BytesIO()
        self.fig.savefig(buffer, **{**savefig_kwargs, 'format': 'rgba', 'dpi': self.dpi})
        colour = np.frombuffer(buffer.getbuffer(), '<u4') & 0xFFFFFF  # R | G << 8 | B << 16 per pixel
        if self.palette is None:
            bones = np.array([int(c[5:7] + c[3:5] + c[1:3], 16) for c in SIDE_COLOURS.values()], np.uint32)
            values, counts = np.unique(colour, return_counts=True)
            ranked = values[np.argsort(-counts, kind='stable')]
            top = np.concatenate([bones, ranked[~np.isin(ranked, bones)]])[:GIF_COLOURS]
            self.palette, self.lut = _rgb(top), np.full(1 << 24, 0xFFFF, np.uint16)  # colour -> index
            self.lut[top] = np.arange(len(top))
        missing = np.unique(colour[self.lut[colour] == 0xFFFF])
        if len(missing):
            self.lut[missing] = ((_rgb(missing)[:, None] - self.palette) ** 2).sum(-1).argmin(1)
        frame = Image.frombuffer('P', self.frame_size, self.lut[colour].astype(np.uint8).tobytes(), 'raw', 'P', 0, 1)
        frame.putpalette(self.palette.astype(np.uint8).ravel().tolist())
        self._frames.append(frame)


def movie_writer(path, fps, bitrate=3000, video=False):
    """GIF: PaletteGifWriter (PillowWriter for frames over a video); MP4: FFMpegWriter (H.264)."""
    if path.lower().endswith('.gif'):
        return PillowWriter(fps=fps) if video else PaletteGifWriter(fps=fps)
    matplotlib.rcParams['animation.ffmpeg_path'] = ffmpeg_path()
    return FFMpegWriter(fps=fps, codec='h264', bitrate=bitrate)


def frame_indices(length, limit=-1, downsample=1):
    """Frames drawn: every ``downsample``-th of the first ``limit`` (all when limit < 1)."""
    frames = list(range(0, length if limit is None or limit < 1 else min(limit, length), max(1, downsample)))
    if not frames:
        raise UserError('no frame to render (empty sequence or --viz-limit 0)')
    return frames


def render_animation(scene: Scene, output, video=None, skip=0, limit=-1, downsample=1, size=5, bitrate=3000,
                     progress=True):
    """Write ``scene`` as an animation: ``output`` ending in .gif or .mp4, or without an
    extension both. video -- file to draw the 2D input over (its first ``skip`` frames
    dropped); limit -- first N frames only; downsample -- every K-th frame; size -- panel
    inches; bitrate -- MP4 kbit/s. Returns the paths written."""
    from common.progress import progress as shown_progress
    paths = output_paths(output)
    frames = frame_indices(len(scene), limit, downsample)
    video_fps, images = open_video(video, frames, skip) if video else (None, None)
    writers = [movie_writer(path, (video_fps or scene.fps) / max(1, downsample), bitrate, bool(video))
               for path in paths]
    fig = new_figure(1, 1 + len(scene.poses), size)
    update = add_panels(fig, scene, size)
    for writer, path in zip(writers, paths):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        writer.setup(fig, path, dpi=DPI)
    try:
        for t in shown_progress(frames, 'rendering', enabled=progress, unit='frame'):
            image = next(images, None) if images is not None else None
            if images is not None and image is None:
                print(f'WARNING: the video ended before frame {t}; the animation stops there')
                break
            update(t, image)
            for writer in writers:
                writer.grab_frame()
    finally:
        for writer in writers:
            writer.finish()
        plt.close(fig)
    return paths


def render_frame_grid(scene: Scene, path, frames=None, columns=4, size=2.5, limit=-1, video=None, skip=0):
    """A PNG of a few frames, one per column (default: ``columns`` evenly spaced over the first
    ``limit``); rows: the 2D input, then every pose source. Returns the frames drawn."""
    if frames is None:
        stop = len(frame_indices(len(scene), limit))
        frames = sorted(set(np.linspace(0, stop - 1, min(columns, stop)).round().astype(int).tolist()))
    images = list(open_video(video, frames, skip)[1]) if video else []
    rows, columns = 1 + len(scene.poses), len(frames)
    fig = new_figure(rows, columns, size)
    for column, t in enumerate(frames):
        KeypointPanel(fig.add_subplot(rows, columns, 1 + column), scene, f'Input, frame {t}', size) \
            .update(t, images[column] if column < len(images) else None)
        for row, title in enumerate(scene.poses, 1):
            ax = fig.add_subplot(rows, columns, 1 + row * columns + column, projection='3d')
            PosePanel(ax, scene, title, size).update(t)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.05, hspace=0.15)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor='white')
    plt.close(fig)
    return frames
