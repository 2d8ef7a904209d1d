"""render.py and common/visualization.py on a tiny hand-made Human3.6M-format dataset: animation
files (frame count, size, motion, decodable MP4), bone colours, exports, saved predictions,
custom 2D files, frame grids and the one-line errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
from common.data.datasets import H36M_SPEC
from common.data.skeleton import H36M_17

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 40
ACTION = 'Walking 1'
SYMMETRY = [list(H36M_17.joints_left), list(H36M_17.joints_right)]


def walking_person(frames=FRAMES, fps=50.0):
    """[T, 17, 3] world metres (z up) of a person walking on a circle of 1 m around the origin,
    arms and legs swinging in opposition: enough motion to tell frames apart."""
    t = np.arange(frames) / fps
    heading = 0.8 * t  # rad; walking counter-clockwise, facing along the tangent
    swing = 0.45 * np.sin(2 * np.pi * 1.2 * t)
    forward = np.stack([-np.sin(heading), np.cos(heading), 0 * t], 1)
    leftward = np.stack([-np.cos(heading), -np.sin(heading), 0 * t], 1)
    up = np.array([0, 0, 1.0])
    pelvis = np.stack([np.cos(heading), np.sin(heading), 0.95 + 0 * t], 1)

    def limb(start, length, angle):  # a bone hanging down, swung forward by ``angle``
        return start + length * (np.sin(angle)[:, None] * forward - np.cos(angle)[:, None] * up)

    joints = [None] * 17
    joints[0] = pelvis
    for hip, knee, ankle, side, sign in ((1, 2, 3, -1, 1), (4, 5, 6, 1, -1)):
        joints[hip] = pelvis + 0.13 * side * leftward
        joints[knee] = limb(joints[hip], 0.44, sign * swing)
        joints[ankle] = limb(joints[knee], 0.45, sign * swing - 0.3)
    for index, height in ((7, 0.23), (8, 0.49), (9, 0.6), (10, 0.72)):
        joints[index] = pelvis + height * up
    for shoulder, elbow, wrist, side, sign in ((11, 12, 13, 1, 1), (14, 15, 16, -1, -1)):
        joints[shoulder] = joints[8] + 0.16 * side * leftward - 0.02 * up
        joints[elbow] = limb(joints[shoulder], 0.28, sign * swing)
        joints[wrist] = limb(joints[elbow], 0.25, sign * swing + 0.3)
    return np.stack(joints, 1).astype(np.float32)


def write_tiny_h36m(directory, subject='S9'):
    """data_3d_h36m.npz + data_2d_h36m_gt.npz (VideoPose3D layout) with one action of ``subject``."""
    world = walking_person()
    cameras = load_h36m_cameras()[subject]
    streams = [project_to_2d(world_to_camera(world, cam.orientation, cam.translation), cam) for cam in cameras]
    np.savez(os.path.join(directory, 'data_3d_h36m.npz'), positions_3d={subject: {ACTION: world}})
    np.savez(os.path.join(directory, 'data_2d_h36m_gt.npz'), positions_2d={subject: {ACTION: streams}},
             metadata={'keypoints_symmetry': SYMMETRY, 'num_joints': 17})
    return world, streams


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A data directory, a tiny random-weight VideoPose3D checkpoint in our format."""
    import torch
    from common.train.checkpoint import atomic_save, make_checkpoint
    from models import build_model
    directory = tmp_path_factory.mktemp('render')
    world, streams = write_tiny_h36m(str(directory))
    torch.manual_seed(0)
    model = build_model('videopose', filter_widths=[3, 3], channels=16, num_joints=17)
    atomic_save(make_checkpoint(model), str(directory / 'tiny.pt'))
    return directory, world, streams


def dataset_flags(directory):
    return ['-d', 'h36m', '-k', 'gt', '--root_path', str(directory), '-str', 'S9', '-ste', 'S9']


def render(directory, *extra):
    """render.py in a subprocess (the command line as users type it), run in ``directory``."""
    command = [sys.executable, os.path.join(ROOT, 'render.py'), *dataset_flags(directory), *extra]
    return subprocess.run(command, cwd=str(directory), capture_output=True, text=True, timeout=600)


def render_in_process(directory, *extra):
    """render.main() in this process (no interpreter start-up); returns its exit status."""
    import render as render_script
    previous = os.getcwd()
    os.chdir(directory)
    try:
        return render_script.main([*dataset_flags(directory), *extra])
    finally:
        os.chdir(previous)


def gif_frames(path):
    """[N, H, W, 3] uint8 frames of a GIF."""
    from PIL import Image, ImageSequence
    with Image.open(path) as image:
        return np.stack([np.asarray(frame.convert('RGB')) for frame in ImageSequence.Iterator(image)])


def mp4_frames(path):
    """(frame count, (width, height)) of a video, decoded with imageio-ffmpeg."""
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(path)
    size = next(reader)['size']
    return sum(1 for _ in reader), tuple(size)


def _rgb(hex_colour):
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def colour_mask(image, hex_colour, tolerance=40):
    """[H, W] pixels of ``image`` [H, W, 3] within ``tolerance`` of the colour in every channel."""
    return np.abs(image[..., :3].astype(int) - _rgb(hex_colour)).max(-1) <= tolerance


def colour_pixels(image, hex_colour, tolerance=40):
    return int(colour_mask(image, hex_colour, tolerance).sum())


def assert_bone_colours(image, panels):
    """Every panel of ``image`` (equal widths) shows left and right bones."""
    from common.visualization import SIDE_COLOURS
    width = image.shape[1] // panels
    for index in range(panels):
        panel = image[:, index * width:(index + 1) * width]
        for side in ('left', 'right'):
            assert colour_pixels(panel, SIDE_COLOURS[side]) > 20, f'no {side} bone in panel {index}'


def test_cli_writes_gif_and_mp4_and_exports_predictions(workspace):
    directory, world, _ = workspace
    result = render(directory, '--viz-subject', 'S9', '--viz-action', ACTION, '-c', str(directory),
                    '--evaluate', 'tiny.pt', '--viz-limit', '20', '--viz-size', '2', '--viz-output', 'out/walk',
                    '--viz-export', 'pred.npy')
    assert result.returncode == 0, result.stderr
    gif, mp4 = directory / 'out' / 'walk.gif', directory / 'out' / 'walk.mp4'
    assert str(gif.relative_to(directory)) in result.stdout and str(mp4.relative_to(directory)) in result.stdout
    frames = gif_frames(gif)
    assert frames.shape == (20, 200, 600, 3)  # input, prediction, ground truth: 2 inches at 100 dpi each
    assert all(np.any(a != b) for a, b in zip(frames[:-1], frames[1:]))
    assert_bone_colours(frames[5], panels=3)
    assert mp4_frames(mp4) == (20, (600, 200))
    exported = np.load(directory / 'pred.npy')
    assert exported.shape == (len(world), 17, 3) and np.isfinite(exported).all()


def test_cli_draws_saved_predictions_without_a_model(workspace):
    directory, world, _ = workspace
    from common.data.camera import world_to_camera
    camera = load_h36m_cameras()['S9'][1]
    np.save(directory / 'saved.npy', world_to_camera(world, camera.orientation, camera.translation))
    status = render_in_process(directory, '--viz-action', ACTION, '--viz-camera', '1', '--viz-predictions',
                               'saved.npy', '--viz-size', '4', '--viz-output', 'grid.png')  # the only subject
    assert status == 0
    from PIL import Image
    from common.visualization import SIDE_COLOURS
    grid = np.asarray(Image.open(directory / 'grid.png').convert('RGB'))
    assert grid.shape == (600, 800, 3)  # rows input / prediction / ground truth, 4 frames of 2 inches
    edges = np.linspace(0.05, 0.99, 4) * len(grid)  # the rows between the grid's top and bottom margins
    bands = [grid[int(top):int(bottom)] for top, bottom in zip(edges[:-1], edges[1:])]
    for band in bands:
        assert colour_pixels(band, SIDE_COLOURS['right']) > 10 and colour_pixels(band, SIDE_COLOURS['left']) > 10
    # the body's right side is on the same side of its left side in the 2D input and in both 3D rows
    # (this camera sees the subject from behind: right bones to the right of the left ones)
    for cell in range(4):
        columns = [[np.nonzero(colour_mask(band[:, cell * 200:(cell + 1) * 200], colour))[1].mean()
                    for colour in (SIDE_COLOURS['right'], SIDE_COLOURS['left'])] for band in bands]
        assert all(right > left + 3 for right, left in columns), columns


def test_cli_renders_a_custom_keypoint_file(workspace):
    """A VideoPose3D custom 2D file: prediction only (no ground truth panel), every 2nd frame."""
    directory, _, streams = workspace
    np.savez(directory / 'data_2d_custom_clips.npz', positions_2d={'clip.mp4': {'custom': [streams[2]]}},
             metadata={'layout_name': 'h36m', 'num_joints': 17, 'keypoints_symmetry': SYMMETRY,
                       'video_metadata': {'clip.mp4': {'w': 1000, 'h': 1000}}})
    status = render_in_process(directory, '--viz-custom', 'data_2d_custom_clips.npz', '-c', str(directory),
                               '--evaluate', 'tiny.pt', '--viz-limit', '10', '--viz-downsample', '2',
                               '--viz-size', '2', '--viz-output', 'custom.gif')
    assert status == 0
    frames = gif_frames(directory / 'custom.gif')
    assert frames.shape == (5, 200, 400, 3)
    assert_bone_colours(frames[0], panels=2)


def test_cli_unknown_action_is_one_line_listing_the_choices(workspace, capsys):
    directory, _, _ = workspace
    status = render_in_process(directory, '--viz-action', 'Dancing', '--viz-predictions', 'x.npy',
                               '--viz-output', 'x.gif')
    stderr = capsys.readouterr().err
    assert status == 2
    assert stderr.count('\n') == 1 and "'Walking 1'" in stderr and 'Dancing' in stderr


# ----------------------------------------------------------------------------- Python API

def tiny_sequence(world, camera_index=0, subject='S9'):
    from common.data.datasets import Sequence
    from common.data.pose_codec import normalize_screen_coordinates, split_trajectory
    camera = load_h36m_cameras()[subject][camera_index]
    pose3d = world_to_camera(world, camera.orientation, camera.translation)
    pixels = project_to_2d(pose3d, camera)
    relative, trajectory = split_trajectory(pose3d, 0)  # as the readers store it
    return Sequence(normalize_screen_coordinates(pixels, camera.res_w, camera.res_h), relative, subject, ACTION,
                    camera_index, 'Walking', image_size=(camera.res_w, camera.res_h), trajectory=trajectory)


def test_display_frame_is_the_world_frame_for_h36m_cameras_and_upright_otherwise():
    from common.visualization import scene_from_sequence, to_display
    world = walking_person()
    for camera_index in range(4):
        sequence = tiny_sequence(world, camera_index)
        prediction = sequence.pose3d.copy()
        prediction[:, 0] = 0  # models predict root-relative poses
        scene = scene_from_sequence(sequence, prediction, H36M_SPEC)
        np.testing.assert_allclose(scene.poses['Ground truth'], world, atol=1e-4)
        np.testing.assert_allclose(scene.poses['Prediction'], world, atol=1e-4)
        assert scene.azimuth == load_h36m_cameras()['S9'][camera_index].azimuth
    camera_frame = world_to_camera(world, *(lambda c: (c.orientation, c.translation))(load_h36m_cameras()['S9'][0]))
    upright = to_display(camera_frame, None, has_trajectory=True)  # unknown camera: the fixed rotation
    assert upright[..., 2].min() == 0
    assert np.all(upright[:, 10, 2] > upright[:, 0, 2] + 0.5) and np.all(upright[:, 0, 2] > upright[:, 3, 2] + 0.5)
    # a rotation, not a reflection: bone lengths and the body's handedness are kept
    def handedness(p):  # (right hip -> left hip, pelvis -> thorax, mean shin): a forward-leaning triad
        shin = p[:, [3, 6]].mean(1) - p[:, [2, 5]].mean(1)
        return np.linalg.det(np.stack([p[:, 4] - p[:, 1], p[:, 8] - p[:, 0], shin], 1))
    assert np.all(np.sign(handedness(upright)) == np.sign(handedness(world)))


def test_two_d_and_three_d_sides_agree_for_every_camera():
    """Same side lists in 2D and 3D, and on screen the right bones lie on the same side of the left
    ones in the input and in the 3D panels (each camera's azimuth shows the body as it sees it)."""
    import matplotlib.pyplot as plt
    from common.visualization import SIDE_COLOURS, add_panels, new_figure, scene_from_sequence
    joint_side = ['left' if j in H36M_17.joints_left else 'right' if j in H36M_17.joints_right else 'centre'
                  for j in range(17)]
    assert H36M_17.bone_side() == [joint_side[child] for child, _ in H36M_17.bones()]
    for camera_index in range(4):
        sequence = tiny_sequence(walking_person(), camera_index)
        prediction = sequence.pose3d.copy()
        prediction[:, 0] = 0
        scene = scene_from_sequence(sequence, prediction, H36M_SPEC)
        assert list(scene.keypoint_sides) == joint_side
        fig = new_figure(1, 3, 2)
        add_panels(fig, scene, 2)(10)
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        plt.close(fig)
        assert image.shape == (200, 600, 3)
        assert_bone_colours(image, panels=3)
        offsets = [np.mean(np.nonzero(colour_mask(image[:, 200 * p:200 * (p + 1)], SIDE_COLOURS['right']))[1])
                   - np.mean(np.nonzero(colour_mask(image[:, 200 * p:200 * (p + 1)], SIDE_COLOURS['left']))[1])
                   for p in range(3)]
        assert all(abs(o) > 3 for o in offsets) and len({np.sign(o) for o in offsets}) == 1, offsets


def test_video_background_skip_and_limit(tmp_path):
    import imageio_ffmpeg
    from common.visualization import render_animation, scene_from_sequence
    video = str(tmp_path / 'clip.mp4')
    writer = imageio_ffmpeg.write_frames(video, (200, 200), fps=50, macro_block_size=1)
    writer.send(None)
    for index in range(12):  # dark green frames getting brighter: the skip is visible in the output
        writer.send(np.full((200, 200, 3), (0, 40 + 15 * index, 0), np.uint8).tobytes())
    writer.close()
    sequence = tiny_sequence(walking_person())
    scene = scene_from_sequence(sequence, sequence.pose3d, H36M_SPEC, ground_truth=False)
    output = str(tmp_path / 'over_video.gif')
    render_animation(scene, output, video=video, skip=4, limit=6, size=2, progress=False)
    frames = gif_frames(output)
    assert frames.shape == (6, 200, 400, 3)
    green = frames[:, 100, 50]  # a pixel of the input panel, inside the video
    assert abs(int(green[0, 1]) - (40 + 15 * 4)) < 12 and green[-1, 1] > green[0, 1] + 50


def test_find_sequence_and_missing_ffmpeg_say_what_to_do(monkeypatch):
    from common.errors import UserError
    from common.visualization import find_sequence, movie_writer
    sequences = [tiny_sequence(walking_person(5), c) for c in range(4)]
    assert find_sequence(sequences, 'S9', ACTION, 3, H36M_SPEC).camera == 3
    assert find_sequence(sequences, None, None, 0, H36M_SPEC).camera == 0  # the only subject and action
    for subject, action, camera, expected in (('S1', ACTION, 0, "'S9'"), ('S9', 'Photo', 0, "'Walking 1'"),
                                              ('S9', ACTION, 7, '0, 1, 2, 3')):
        with pytest.raises(UserError, match=expected):
            find_sequence(sequences, subject, action, camera, H36M_SPEC)
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)
    monkeypatch.setattr('shutil.which', lambda name: None)
    with pytest.raises(UserError, match='pip install imageio-ffmpeg'):
        movie_writer('x.mp4', 50)
