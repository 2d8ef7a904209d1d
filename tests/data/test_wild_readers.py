"""Readers of the detectors' keypoint files, on the format-exact samples of
../shared/reference/formats: values of the selected person, the VideoPose3D gap-filling rule, the
joint-layout conversions against the published formulas on hand-made points."""
import json
import os

import numpy as np
import pytest

from common.data.wild.layouts import (COCO17_FROM, FORMAT_LAYOUTS, coco17_to_h36m17, convert_for_model,
                                      halpe26_to_h36m17)
from common.data.wild.readers import detect_tool, read_keypoints
from common.data.wild.tracks import fill_gaps, person_track, resample
from common.errors import UserError


@pytest.fixture(scope='module')
def formats(reference_dir):
    return os.path.join(reference_dir, 'formats')


def alphapose_people(path, track):
    """{frame: [K, 3]} of one track, straight from the JSON."""
    with open(path) as handle:
        items = json.load(handle)
    return {int(i['image_id'].split('.')[0]): np.reshape(i['keypoints'], (-1, 3)) for i in items if i['idx'] == track}


@pytest.mark.parametrize('name, layout', [('alphapose_coco17_sample.json', 'coco_17'),
                                          ('alphapose_halpe26_sample.json', 'halpe_26')])
def test_alphapose_tracks_and_interpolation(formats, name, layout):
    path = os.path.join(formats, name)
    keypoints = read_keypoints(path)
    assert (keypoints.tool, keypoints.layout, keypoints.tracked) == ('alphapose', layout, True)
    assert len(keypoints.frames) == 10
    track = person_track(keypoints)  # track 1 (9 frames) rather than track 2 (6 frames)
    assert track.person == 1 and track.filled_frames == [6]
    raw = alphapose_people(path, 1)
    for frame, points in raw.items():
        np.testing.assert_allclose(track.keypoints[frame], points[:, :2], atol=1e-4)
        np.testing.assert_allclose(track.confidence[frame], points[:, 2], atol=1e-6)
    np.testing.assert_allclose(track.keypoints[6], (raw[5][:, :2] + raw[7][:, :2]) / 2, atol=1e-4)
    assert (track.confidence[6] == 0).all()
    second = person_track(keypoints, person=2)  # frames 2-5, 7, 8: held before and after, linear in between
    raw2 = alphapose_people(path, 2)
    assert second.filled_frames == [0, 1, 6, 9]
    np.testing.assert_allclose(second.keypoints[0], raw2[2][:, :2], atol=1e-4)
    np.testing.assert_allclose(second.keypoints[9], raw2[8][:, :2], atol=1e-4)
    np.testing.assert_allclose(second.keypoints[6], (raw2[5][:, :2] + raw2[7][:, :2]) / 2, atol=1e-4)
    with pytest.raises(UserError, match=r'no person 7; its track ids \(frames\): 1 \(9\), 2 \(6\)'):
        person_track(keypoints, person=7)


def test_openpose_folder(formats):
    folder = os.path.join(formats, 'openpose_body25_sample')
    keypoints = read_keypoints(folder)
    assert (keypoints.tool, keypoints.layout, keypoints.tracked) == ('openpose', 'body_25', False)
    assert len(keypoints.frames) == 4
    raw = []
    for index in range(4):
        with open(os.path.join(folder, f'openpose_sample_{index:012d}_keypoints.json')) as handle:
            raw.append([np.reshape(p['pose_keypoints_2d'], (25, 3)) for p in json.load(handle)['people']])
    best = max(raw[1], key=lambda p: p[:, 2].sum())  # two people: the surer and more complete one
    assert best[0, 0] < 500 and (best[:, 2] > 0).all()
    track = person_track(keypoints)
    assert track.filled_frames == [2]
    np.testing.assert_allclose(track.keypoints[1], best[:, :2], atol=1e-4)
    found = raw[3][0][:, 2] > 0
    np.testing.assert_allclose(track.keypoints[2, found], (best[found, :2] + raw[3][0][found, :2]) / 2, atol=1e-4)
    for joint in (17, 20, 23):  # (0, 0, 0) in the last frame: not a point at the corner, the last one found
        assert (raw[3][0][joint] == 0).all()
        np.testing.assert_allclose(track.keypoints[3, joint], best[joint, :2], atol=1e-4)
        assert track.confidence[3, joint] == 0


def test_mmpose_whole_image_box_is_nobody(formats):
    path = os.path.join(formats, 'mmpose_coco17_sample.json')
    keypoints = read_keypoints(path)
    assert (keypoints.tool, keypoints.layout, keypoints.image_size) == ('mmpose', 'coco_17', (1280, 720))
    with open(path) as handle:
        raw = [np.asarray(f['instances'][0]['keypoints']) for f in json.load(handle)]
    track = person_track(keypoints)
    assert track.filled_frames == [2]
    np.testing.assert_allclose(track.keypoints[3], raw[3], atol=1e-4)
    np.testing.assert_allclose(track.keypoints[2], (raw[1] + raw[3]) / 2, atol=1e-4)


def test_detectron2_file_gives_the_prepare_data_2d_custom_output(formats):
    """The sample custom file was made by VideoPose3D's prepare_data_2d_custom.py from the sample
    detection file (best box per frame, np.interp over the frames with a detection)."""
    keypoints = read_keypoints(os.path.join(formats, 'detectron2_video_sample.mp4.npz'))
    assert (keypoints.tool, keypoints.layout, keypoints.image_size) == ('detectron2', 'coco_17', (1280, 720))
    track = person_track(keypoints)
    assert track.filled_frames == [0, 23, 24, 25, 47, 59]
    with np.load(os.path.join(formats, 'data_2d_custom_sample.npz'), allow_pickle=True) as archive:
        expected = archive['positions_2d'].item()['detectron2_video_sample.mp4']['custom'][0]
    assert track.keypoints.dtype == np.float32
    np.testing.assert_allclose(track.keypoints, expected, atol=1e-3, rtol=0)
    custom = person_track(read_keypoints(os.path.join(formats, 'data_2d_custom_sample.npz')))
    np.testing.assert_allclose(custom.keypoints, expected, atol=1e-6, rtol=0)


def test_fill_rule_by_hand():
    selected = np.full((5, 1, 3), np.nan)
    selected[1, 0], selected[3, 0] = (10, 20, 0.5), (30, 60, 0.9)
    pixels, confidence, filled = fill_gaps(selected)
    np.testing.assert_allclose(pixels[:, 0], [[10, 20], [10, 20], [20, 40], [30, 60], [30, 60]])
    np.testing.assert_allclose(confidence[:, 0], [0, 0.5, 0, 0.9, 0])
    assert filled == [0, 2, 4]
    with pytest.raises(UserError, match='no person in any frame'):
        fill_gaps(np.full((3, 17, 3), np.nan), 'empty.json')


def test_coco_to_h36m_formulas_by_hand():
    rng = np.random.default_rng(0)
    coco = rng.uniform(0, 100, (2, 17, 3))
    h36m = coco17_to_h36m17(coco)
    pelvis, thorax = (coco[:, 11] + coco[:, 12]) / 2, (coco[:, 5] + coco[:, 6]) / 2
    np.testing.assert_allclose(h36m[:, 0], pelvis)
    np.testing.assert_allclose(h36m[:, 8], thorax)
    np.testing.assert_allclose(h36m[:, 7], (pelvis + thorax) / 2)
    np.testing.assert_allclose(h36m[:, 10], (coco[:, 1] + coco[:, 2]) / 2)  # head = mid-eyes
    np.testing.assert_allclose(h36m[:, 9], coco[:, 0])  # neck/nose = nose
    np.testing.assert_allclose(h36m[:, [1, 2, 3, 4, 5, 6]], coco[:, [12, 14, 16, 11, 13, 15]])
    np.testing.assert_allclose(h36m[:, [11, 12, 13, 14, 15, 16]], coco[:, [5, 7, 9, 6, 8, 10]])


def test_halpe_to_h36m_formulas_by_hand():
    halpe = np.random.default_rng(1).uniform(0, 100, (2, 26, 3))
    h36m = halpe26_to_h36m17(halpe)
    np.testing.assert_allclose(h36m[:, 0], halpe[:, 19])  # hip
    np.testing.assert_allclose(h36m[:, 7], (halpe[:, 18] + halpe[:, 19]) / 2)
    np.testing.assert_allclose(h36m[:, 8], halpe[:, 18])  # neck
    np.testing.assert_allclose(h36m[:, 10], halpe[:, 17])  # head top
    np.testing.assert_allclose(h36m[:, 9], halpe[:, 0])
    np.testing.assert_allclose(h36m[:, [1, 4, 11, 14, 16]], halpe[:, [12, 11, 5, 6, 10]])


def test_openpose_layouts_to_coco_by_name():
    assert COCO17_FROM['body_25'] == (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
    assert COCO17_FROM['coco_18'] == (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
    body = np.arange(25 * 2, dtype=float).reshape(1, 25, 2)
    converted = convert_for_model(body, 'body_25', 'h36m_17')
    np.testing.assert_allclose(converted[0, 0], (body[0, 12] + body[0, 9]) / 2)  # mid L/R hip, not MidHip
    for layout in FORMAT_LAYOUTS.values():  # left/right lists name mirrored joints
        for left, right in zip(layout.left, layout.right):
            assert layout.joint_names[left].replace('left', 'right') == layout.joint_names[right]


def test_resample_keeps_the_time_span():
    values = np.linspace(0, 1, 31)[:, None, None].repeat(2, 1)  # 1 s at 30 fps
    out = resample(values.astype(np.float32), 30, 50)
    assert out.shape == (51, 2, 1)
    np.testing.assert_allclose(out[:, 0, 0], np.linspace(0, 1, 51), atol=1e-6)


def test_unknown_files_are_one_line_errors(tmp_path):
    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'annotations': [1, 2]}))
    with pytest.raises(UserError, match='not the JSON of a known tool'):
        detect_tool(str(other))
    broken = tmp_path / 'broken.json'
    broken.write_text('[{"image_id": ')
    with pytest.raises(UserError, match='not a readable JSON file'):
        read_keypoints(str(broken))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match=r'no OpenPose frame files \(\*_keypoints.json\)'):
        read_keypoints(str(tmp_path / 'empty'))
    wide = tmp_path / 'wide.json'
    wide.write_text(json.dumps([{'image_id': '0.jpg', 'keypoints': [1.0] * 21 * 3, 'score': 1, 'idx': [0.0]}]))
    with pytest.raises(UserError, match='21 joints are not a layout'):
        read_keypoints(str(wide))
