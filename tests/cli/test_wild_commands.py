"""Lifting one's own video: VideoPose3D's `run.py -d custom ... --render` command and the direct
`render.py --input-keypoints FILE` form on the format samples (.npy, JSON and video of the right
length, values equal to the model's prediction), and the one-line errors of bad input."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from common.data.pose_codec import normalize_screen_coordinates
from common.data.skeleton import H36M_17
from common.data.wild.layouts import FORMAT_LAYOUTS, halpe26_to_h36m17
from common.data.wild.readers import read_keypoints
from common.data.wild.tracks import person_track
from common.eval.inference import predict_sequence
from common.train.checkpoint import atomic_save, make_checkpoint
from helpers_data import captured, load_script, run_inprocess
from models import build_model

FRAMES = {'alphapose_coco17_sample.json': 10, 'alphapose_halpe26_sample.json': 10, 'openpose_body25_sample': 4,
          'mmpose_coco17_sample.json': 4, 'detectron2_video_sample.mp4.npz': 60, 'data_2d_custom_sample.npz': 60}
VIDEO = 'detectron2_video_sample.mp4'


def render(argv):
    """(exit status, stdout, stderr) of render.py in this process."""
    script = load_script('render.py')
    return captured(lambda: script.main([str(a) for a in argv]))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, reference_dir):
    """Checkpoints (ours, COCO and Human3.6M input; an official-layout VideoPose3D file), the custom
    file in data/, and a 1280 x 720 video of 60 frames."""
    import imageio_ffmpeg
    root = tmp_path_factory.mktemp('wild')
    (root / 'data').mkdir()
    (root / 'checkpoint').mkdir()
    formats = os.path.join(reference_dir, 'formats')
    shutil.copy(os.path.join(formats, 'data_2d_custom_sample.npz'), root / 'data' / 'data_2d_custom_myvideos.npz')
    torch.manual_seed(0)
    for name, layout in (('coco.pt', 'coco_17'), ('h36m.pt', None)):
        model = build_model('videopose', filter_widths=[3, 3], channels=16, input_layout=layout)
        atomic_save(make_checkpoint(model), str(root / 'checkpoint' / name))
    official = build_model('videopose', filter_widths=[3, 3, 3], channels=16)
    torch.save({'epoch': 80, 'lr': 1e-5, 'model_pos': official.state_dict()},
               root / 'checkpoint' / 'pretrained_h36m_detectron_coco.bin')
    writer = imageio_ffmpeg.write_frames(str(root / VIDEO), (1280, 720), fps=30, macro_block_size=16)
    writer.send(None)
    for index in range(60):
        writer.send(np.full((720, 1280, 3), 4 * index, np.uint8).tobytes())
    writer.close()
    return root


def expected_prediction(checkpoint, pose2d, pairs):
    from common.compat import load_model
    model = load_model(checkpoint)
    return predict_sequence(model, pose2d, pairs, output_flip_pairs=H36M_17.flip_pairs)


def check_outputs(stem, frames):
    poses = np.load(f'{stem}.npy')
    assert poses.shape == (frames, 17, 3) and poses.dtype == np.float32
    with open(f'{stem}.json') as handle:
        document = json.load(handle)
    assert len(document['frames']) == frames and document['joint_names'] == list(H36M_17.joint_names)
    world = np.array([[f['joints'][n] for n in H36M_17.joint_names] for f in document['frames']])
    assert abs(world[..., 2].min()) < 1e-6  # floor at z = 0
    # the world frame is a rotation of the camera frame: bone lengths are the same
    bones = [(j, p) for j, p in enumerate(H36M_17.parents) if p >= 0]
    children, parents = [j for j, _ in bones], [p for _, p in bones]
    lengths = lambda x: np.linalg.norm(x[:, children] - x[:, parents], axis=-1)  # noqa: E731
    np.testing.assert_allclose(lengths(world), lengths(poses), atol=2e-4)
    return poses, document


@pytest.mark.parametrize('script', ['run.py', 'render.py'])
def test_videopose3d_custom_command(workdir, monkeypatch, script):
    """`run.py -d custom -k myvideos -arc 3,3,3,3,3 -c checkpoint --evaluate pretrained_h36m_detectron_coco.bin
    --render --viz-subject ... --viz-action custom --viz-camera 0 --viz-video ... --viz-output output.mp4
    --viz-size 6`, at small size (render.py: the same without --render)."""
    import imageio_ffmpeg
    monkeypatch.chdir(workdir)
    argv = ['-d', 'custom', '-k', 'myvideos', '-arc', '3,3,3', '-c', 'checkpoint', '--evaluate',
            'pretrained_h36m_detectron_coco.bin', '--viz-subject', VIDEO, '--viz-action', 'custom', '--viz-camera', 0,
            '--viz-video', VIDEO, '--viz-output', f'output_{script}.mp4', '--viz-size', 2]
    # render.py draws the first 5 frames only, to keep the test short
    code, out, err = run_inprocess(argv + ['--render']) if script == 'run.py' else render(argv + ['--viz-limit', 5])
    assert code == 0, err
    poses, document = check_outputs(f'output_{script}', 60)
    assert document['model_input_layout'] == 'coco_17'
    assert imageio_ffmpeg.count_frames_and_secs(f'output_{script}.mp4')[0] == (60 if script == 'run.py' else 5)
    with np.load('data/data_2d_custom_myvideos.npz', allow_pickle=True) as archive:
        pixels = archive['positions_2d'].item()[VIDEO]['custom'][0]
    expected = expected_prediction('checkpoint/pretrained_h36m_detectron_coco.bin', normalize_screen_coordinates(
        pixels, 1280, 720), FORMAT_LAYOUTS['coco_17'].flip_pairs)
    np.testing.assert_allclose(poses, expected, atol=1e-5)


@pytest.mark.parametrize('name', sorted(FRAMES))
def test_direct_command_on_each_format(workdir, reference_dir, tmp_path, name):
    path = os.path.join(reference_dir, 'formats', name)
    size = [] if name.endswith('.npz') or name.startswith('mmpose') else ['--video-size', '1280x720']
    code, out, err = render(['--input-keypoints', path, *size, '-c', workdir / 'checkpoint', '--evaluate', 'coco.pt',
                             '--viz-export', tmp_path / 'poses.npy', '--export-json', tmp_path / 'poses.json'])
    assert code == 0, err
    poses, document = check_outputs(tmp_path / 'poses', FRAMES[name])
    track = person_track(read_keypoints(path))
    coco = track.keypoints[:, list(range(17))] if track.layout != 'body_25' else None
    if coco is not None:
        expected = expected_prediction(str(workdir / 'checkpoint' / 'coco.pt'), normalize_screen_coordinates(
            coco, 1280, 720), FORMAT_LAYOUTS['coco_17'].flip_pairs)
        np.testing.assert_allclose(poses, expected, atol=1e-5)
        keypoints_2d = np.array([frame['keypoints_2d'] for frame in document['frames']])
        np.testing.assert_allclose(keypoints_2d[..., :2], coco, atol=1e-3)
        np.testing.assert_allclose(keypoints_2d[..., 2], track.confidence[:, :17], atol=1e-3)
    assert document['filled_frames'] == track.filled_frames


def test_direct_command_converts_for_a_human36m_model_and_draws_the_video(workdir, reference_dir, tmp_path):
    from PIL import Image
    path = os.path.join(reference_dir, 'formats', 'alphapose_halpe26_sample.json')
    code, out, err = render(['--input-keypoints', path, '--viz-video', workdir / VIDEO, '-c', workdir / 'checkpoint',
                             '--evaluate', 'h36m.pt', '--viz-output', tmp_path / 'clip.gif', '--viz-size', 2,
                             '--viz-limit', 10])
    assert code == 0, err
    # AlphaPose's file ends at its last detection (frame 9): the video's other 50 frames hold the last pose
    poses, document = check_outputs(tmp_path / 'clip', 60)
    assert document['filled_frames'] == [6] + list(range(10, 60))
    assert (document['keypoint_layout'], document['model_input_layout']) == ('halpe_26', 'h36m_17')
    assert document['image_size'] == [1280, 720] and document['fps'] == pytest.approx(30)
    halpe = person_track(read_keypoints(path)).keypoints
    halpe = np.concatenate([halpe, halpe[-1:].repeat(50, 0)])
    expected = expected_prediction(str(workdir / 'checkpoint' / 'h36m.pt'), normalize_screen_coordinates(
        halpe26_to_h36m17(halpe), 1280, 720), H36M_17.flip_pairs)
    np.testing.assert_allclose(poses, expected, atol=1e-5)
    with Image.open(tmp_path / 'clip.gif') as gif:
        assert gif.n_frames == 10


def test_resampling_to_the_models_frame_rate(workdir, reference_dir, tmp_path):
    """--model-fps 50 on a 25 fps video: the 2D resampled to 50 fps, lifted, the 3D back to the video's frames."""
    from common.data.wild.tracks import resample
    path = os.path.join(reference_dir, 'formats', 'detectron2_video_sample.mp4.npz')
    code, out, err = render(['--input-keypoints', path, '--video-fps', 25, '--model-fps', 50, '-c',
                             workdir / 'checkpoint', '--evaluate', 'coco.pt', '--viz-export', tmp_path / 'p.npy',
                             '--export-json', tmp_path / 'p.json'])
    assert code == 0, err
    poses, document = check_outputs(tmp_path / 'p', 60)
    pose2d = normalize_screen_coordinates(person_track(read_keypoints(path)).keypoints, 1280, 720)
    at_50 = expected_prediction(str(workdir / 'checkpoint' / 'coco.pt'), resample(pose2d, 25, 50),
                                FORMAT_LAYOUTS['coco_17'].flip_pairs)
    assert len(at_50) == 119
    np.testing.assert_allclose(poses, resample(at_50, 50, 25)[:60], atol=1e-5)
    np.testing.assert_allclose(poses, at_50[::2], atol=1e-5)  # every other 50 fps frame is a video frame


def test_a_model_taking_the_confidence_gets_it(workdir, reference_dir, tmp_path):
    """VideoPose3D trained on 3-channel detections (x, y, probability): the official layout is recognised
    and the lifter gets the detector's confidence; -d h36m 2D has none, which is one line."""
    model = build_model('videopose', filter_widths=[3, 3], channels=16, in_features=3)
    torch.save({'epoch': 80, 'model_pos': model.state_dict()}, tmp_path / 'd-pt-243.bin')
    path = os.path.join(reference_dir, 'formats', 'alphapose_coco17_sample.json')
    code, out, err = render(['--input-keypoints', path, '--video-size', '1280x720', '--input-layout', 'coco_17',
                             '--evaluate', tmp_path / 'd-pt-243.bin', '--viz-export', tmp_path / 'p.npy'])
    assert code == 0, err
    track = person_track(read_keypoints(path))
    pose = np.concatenate([normalize_screen_coordinates(track.keypoints, 1280, 720), track.confidence[..., None]], -1)
    expected = expected_prediction(str(tmp_path / 'd-pt-243.bin'), pose, FORMAT_LAYOUTS['coco_17'].flip_pairs)
    np.testing.assert_allclose(np.load(tmp_path / 'p.npy'), expected, atol=1e-5)
    from helpers_data import write_tiny_h36m
    write_tiny_h36m(tmp_path / 'h36m', frames=40)
    code, out, err = run_inprocess(['-k', 'gt', '--root_path', tmp_path / 'h36m', '-ste', 'S9', '--nolog',
                                    '--evaluate', tmp_path / 'd-pt-243.bin'])
    assert code == 2 and err.count('\n') == 1 and 'takes 3 channels per joint' in err, err


def _first_frame(path):
    with open(path) as handle:
        return json.load(handle)[:1]


def _write(path, content):
    path.write_text(json.dumps(content))
    return path


BAD = {
    'unknown tool': (lambda d, f: _write(d / 'coco_annotations.json', {'images': [], 'annotations': []}), [],
                     'not the JSON of a known tool'),
    'wrong joint count': (lambda d, f: _write(d / 'wide.json', [{'image_id': f'{i}.jpg', 'keypoints': [5.0] * 75,
                                                                 'score': 1.0, 'idx': 1} for i in range(3)]),
                          ['--video-size', '100x100'], '25 joints are not a layout'),
    'nobody': (lambda d, f: _write(d / 'alphapose-results.json', []), [], 'found nobody in any frame'),
    'nobody in any frame': (lambda d, f: [_write(d / f'v_{i:012d}_keypoints.json', {'version': 1.3, 'people': []})
                                          for i in range(3)] and d, ['--video-size', '100x100'],
                            'no person in any frame'),
    'single frame': (lambda d, f: _write(d / 'one.json', _first_frame(os.path.join(f, 'mmpose_coco17_sample.json'))),
                     ['--video-size', '1280x720'], 'has a single frame'),
    'size against the file': (lambda d, f: os.path.join(f, 'detectron2_video_sample.mp4.npz'),
                              ['--video-size', '640x480'], 'does not match the keypoints'),
    'size too small': (lambda d, f: os.path.join(f, 'alphapose_coco17_sample.json'), ['--video-size', '320x240'],
                       'beyond a 320x240 frame'),
    'no frames in the folder': (lambda d, f: d, [], r'has no OpenPose frame files'),
    'no size': (lambda d, f: os.path.join(f, 'alphapose_coco17_sample.json'), [], 'frame size of'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(workdir, reference_dir, tmp_path, case):
    make, flags, message = BAD[case]
    folder = tmp_path / 'input'
    folder.mkdir()
    path = make(folder, os.path.join(reference_dir, 'formats'))
    (tmp_path / 'out.npy').write_bytes(b'earlier result')
    code, out, err = render(['--input-keypoints', path, *flags, '-c', workdir / 'checkpoint', '--evaluate', 'coco.pt',
                             '--viz-output', tmp_path / 'out.gif'])
    assert code == 2 and err.startswith('error: ') and err.count('\n') == 1, err
    assert message in err and 'Traceback' not in err
    assert (tmp_path / 'out.npy').read_bytes() == b'earlier result'
    assert not (tmp_path / 'out.json').exists() and not (tmp_path / 'out.gif').exists()


def test_a_model_of_another_layout_is_refused(workdir, reference_dir, tmp_path):
    model = build_model('videopose', filter_widths=[3], channels=8, num_joints=14, input_layout='mpii3d_14')
    atomic_save(make_checkpoint(model), str(tmp_path / 'mpii.pt'))
    path = os.path.join(reference_dir, 'formats', 'detectron2_video_sample.mp4.npz')
    code, out, err = render(['--input-keypoints', path, '--evaluate', tmp_path / 'mpii.pt',
                             '--viz-export', tmp_path / 'p.npy'])
    assert code == 2 and err.count('\n') == 1 and 'the model takes' in err, err
    assert not (tmp_path / 'p.npy').exists()


def test_keypoints_longer_than_the_video_are_refused(workdir, reference_dir, tmp_path):
    path = os.path.join(reference_dir, 'formats', 'detectron2_video_sample.mp4.npz')
    code, out, err = render(['--input-keypoints', path, '--viz-video', workdir / VIDEO, '--viz-skip', 40,
                             '-c', workdir / 'checkpoint', '--evaluate', 'coco.pt', '--viz-output', tmp_path / 'o.mp4'])
    assert code == 2 and err.count('\n') == 1 and 'has keypoints for 60 frames' in err and 'has 20 after' in err, err
    assert not os.listdir(tmp_path)
