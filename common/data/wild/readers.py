"""Readers of the 2D keypoint files people get from their own videos, one per tool, into one
representation (:class:`KeypointFile`): per frame, the people found, each [K, 3] (x, y in pixels of
the frame, confidence), in the tool's joint layout.

Tools and files (docs: data-formats 5.2-5.5): AlphaPose ``alphapose-results.json`` (COCO-17,
Halpe-26/136; track ids with ``--pose_track``; its ``--format open|cmu`` dicts), OpenPose
``--write_json`` folders (BODY_25, COCO-18; ``0, 0, 0`` = joint not found), MMPose prediction JSON
(inferencer and ``--save-predictions`` containers; a whole-image box of score 1 = nobody found),
Detectron2 ``infer_video_d2.py`` files (``<video>.npz``) and VideoPose3D ``data_2d_custom_<name>.npz``.
A joint not found is (0, 0, 0) in every reader's output.
"""
import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from common.data.records import load_npz_entries
from common.data.wild.layouts import layout_of
from common.errors import UserError

TOOLS = ('alphapose', 'openpose', 'mmpose', 'detectron2', 'videopose3d')


@dataclass
class Person:
    """keypoints -- [K, 3] x, y (pixels), confidence; score -- the detector's person score (higher:
    surer); track -- its track id, None when the tool did not track people."""
    keypoints: np.ndarray
    score: float
    track: Optional[int] = None


@dataclass
class KeypointFile:
    """frames -- per video frame, the people found in it (an empty list: nobody);
    image_size -- (width, height) px when the file says it; tracked -- people carry track ids."""
    path: str
    tool: str
    layout: str
    frames: List[List[Person]]
    image_size: Optional[Tuple[int, int]] = None
    tracked: bool = False
    notes: List[str] = field(default_factory=list)


def read_keypoints(path: str, tool: str = 'auto', video: Optional[str] = None) -> KeypointFile:
    """The keypoint file (or OpenPose folder) at ``path``; ``tool`` 'auto' tells it from the
    content. ``video`` picks a video of a VideoPose3D custom file holding several."""
    if not os.path.exists(path):
        raise UserError(f"keypoint file '{path}' does not exist")
    if tool == 'auto':
        tool = detect_tool(path)
    if tool not in TOOLS:
        raise UserError(f"unknown --keypoints-format '{tool}'; choose auto or one of {', '.join(TOOLS)}")
    reader = {'alphapose': read_alphapose, 'openpose': read_openpose, 'mmpose': read_mmpose,
              'detectron2': read_detectron2, 'videopose3d': lambda p: read_videopose3d_custom(p, video)}[tool]
    return reader(path)


# ----------------------------------------------------------------------------- telling the tool

def _load_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"'{path}' is not a readable JSON file: {str(err).splitlines()[0]}") from None


def detect_tool(path: str) -> str:
    """Which tool wrote ``path``, from its content; a UserError naming the formats otherwise."""
    if os.path.isdir(path):
        return 'openpose'
    if path.endswith('.npz'):
        names = _npz_names(path)
        if 'boxes' in names and 'keypoints' in names:
            return 'detectron2'
        if 'positions_2d' in names:
            return 'videopose3d'
        raise UserError(f"'{path}' holds {sorted(names)}: neither a Detectron2 infer_video_d2.py file "
                        f"(boxes, keypoints) nor a VideoPose3D custom file (positions_2d)")
    data = _load_json(path)
    if isinstance(data, dict):
        if 'instance_info' in data:
            return 'mmpose'
        if 'people' in data:
            return 'openpose'
        values = list(data.values())
        if values and all(isinstance(v, dict) and ('bodies' in v or 'people' in v) for v in values):
            return 'alphapose'
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        if all('image_id' in item and 'keypoints' in item for item in data):
            return 'alphapose'
        if all('instances' in item for item in data) or all('keypoint_scores' in item for item in data):
            return 'mmpose'
    if isinstance(data, list) and not data:
        raise UserError(f"'{path}' is an empty list: the detector found nobody in any frame")
    raise UserError(f"'{path}' is not the JSON of a known tool (AlphaPose results, OpenPose --write_json, "
                    f"MMPose predictions); convert it to one of them or give --keypoints-format")


def _npz_names(path):
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            return {name[:-4] for name in archive.namelist() if name.endswith('.npy')}
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"'{path}' is not a readable .npz archive: {err}") from None


def _person(values, path, where) -> np.ndarray:
    """A flat x, y, c list -> [K, 3]."""
    array = np.asarray(values, np.float64)
    if array.ndim != 1 or len(array) % 3:
        raise UserError(f"'{path}': {where} has {array.size} keypoint numbers, not 3 per joint")
    return array.reshape(-1, 3)


def _file(path, tool, frames, counts, image_size=None, tracked=False):
    """A KeypointFile whose people all have the joints of one known layout."""
    counts = sorted(set(counts))
    if not counts:
        raise UserError(f"'{path}': no person in any frame; check the detector's output (or the video)")
    if len(counts) > 1:
        raise UserError(f"'{path}': people with {' and '.join(map(str, counts))} joints in one file")
    layout, keep = layout_of(tool, counts[0], path)
    for people in frames:
        for person in people:
            person.keypoints = person.keypoints[:keep]
    return KeypointFile(path, tool, layout, frames, image_size, tracked)


def _frames_from_index(indexed, path):
    """{frame index: [Person]} -> a list over frames 0..max (missing frames: nobody)."""
    if not indexed:
        raise UserError(f"'{path}': no person in any frame; check the detector's output (or the video)")
    if min(indexed) < 0:
        raise UserError(f"'{path}': negative frame number {min(indexed)}")
    frames = [[] for _ in range(max(indexed) + 1)]
    for index, people in indexed.items():
        frames[index] = people
    return frames


def _frame_number(name, order):
    """AlphaPose image_id ('12.jpg', 12, 'frame_000012.png') -> its number, else its order."""
    if isinstance(name, (int, float)):
        return int(name)
    digits = re.findall(r'\d+', os.path.splitext(str(name))[0])
    return int(digits[-1]) if digits else order.setdefault(name, len(order))


# ----------------------------------------------------------------------------- the readers

def read_alphapose(path) -> KeypointFile:
    """alphapose-results.json: one object per person per frame; frames without anybody are absent."""
    data = _load_json(path)
    indexed, counts, order, tracked = {}, [], {}, True
    if isinstance(data, dict):  # --format open / cmu: {image_id: {'people' | 'bodies': [...]}}
        for name, entry in data.items():
            people = entry.get('people', entry.get('bodies', []))
            key = 'pose_keypoints_2d' if 'people' in entry else 'joints'
            found = [Person(_person(p[key], path, f'{name}'), 1.0) for p in people]
            indexed[_frame_number(name, order)] = found
            counts += [len(p.keypoints) for p in found]
        return _file(path, 'alphapose', _frames_from_index(indexed, path), counts)
    for item in data:
        idx = item.get('idx')
        track = int(idx) if isinstance(idx, (int, float)) and not isinstance(idx, bool) else None
        tracked = tracked and track is not None
        person = Person(_person(item['keypoints'], path, f"image {item['image_id']}"),
                        float(item.get('score', 0.0)), track)
        indexed.setdefault(_frame_number(item['image_id'], order), []).append(person)
        counts.append(len(person.keypoints))
    return _file(path, 'alphapose', _frames_from_index(indexed, path), counts, tracked=tracked)


def read_openpose(path) -> KeypointFile:
    """An OpenPose --write_json folder (one <name>_<12 digits>_keypoints.json per frame), or one file."""
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, '*_keypoints.json')))
    if not files:
        raise UserError(f"'{path}' has no OpenPose frame files (*_keypoints.json): run OpenPose with "
                        f"--write_json {path}")
    numbers = [re.findall(r'(\d+)_keypoints\.json$', os.path.basename(f)) for f in files]
    if all(numbers):
        files = [f for _, f in sorted(zip([int(n[0]) for n in numbers], files))]
    frames, counts, tracked = [], [], True
    for name in files:
        data = _load_json(name)
        if not isinstance(data, dict) or 'people' not in data:
            raise UserError(f"'{name}' is not an OpenPose keypoint file (no 'people')")
        people = []
        for p in data['people']:
            points = _person(p.get('pose_keypoints_2d', []), name, 'pose_keypoints_2d')
            ids = p.get('person_id', [-1])
            track = int(ids[0]) if ids and ids[0] != -1 else None
            tracked = tracked and track is not None
            # no person score in the file: the sum of the joints' confidences (sure and complete people first)
            people.append(Person(points, float(points[:, 2].sum()), track))
            counts.append(len(points))
        frames.append(people)
    return _file(path, 'openpose', frames, counts, tracked=tracked and bool(counts))


def _mmpose_person(instance, path, where):
    points = np.asarray(instance['keypoints'], np.float64)
    scores = np.asarray(instance.get('keypoint_scores', np.ones(len(points))), np.float64)
    if points.ndim != 2 or points.shape[1] < 2 or len(scores) != len(points):
        raise UserError(f"'{path}': {where} has keypoints of shape {points.shape}, expected (K, 2) and K scores")
    box = np.asarray(instance.get('bbox', [[1, 1, 0, 0]]), np.float64).reshape(-1)[:4]
    return Person(np.concatenate([points[:, :2], scores[:, None]], 1), float(instance.get('bbox_score', 1.0))), box


def read_mmpose(path) -> KeypointFile:
    """MMPose predictions: the inferencer's [{frame_id (0-based), instances}], the demos'
    {meta_info, instance_info (1-based frame_id)}, or one image's list of instances. A box covering
    the whole image with score 1 is MMPose's stand-in when the detector found nobody: no person."""
    data = _load_json(path)
    first = 0
    if isinstance(data, dict):
        data, first = data.get('instance_info', []), 1
    if data and 'instances' not in data[0]:
        data = [{'frame_id': first, 'instances': data}]
    indexed, counts, size = {}, [], None
    for entry in data:
        people = []
        for instance in entry['instances']:
            person, box = _mmpose_person(instance, path, f"frame {entry['frame_id']}")
            if box[0] == 0 and box[1] == 0 and person.score == 1.0:
                size = (int(round(box[2])), int(round(box[3])))
                continue
            people.append(person)
            counts.append(len(person.keypoints))
        indexed[int(entry['frame_id']) - first] = people
    return _file(path, 'mmpose', _frames_from_index(indexed, path), counts, image_size=size)


def read_detectron2(path) -> KeypointFile:
    """VideoPose3D's infer_video_d2.py output: per frame boxes [[], (n, 5)] and keypoints
    [[], (n, 4, 17)] (rows x, y, logit, prob), metadata {'w', 'h'}."""
    entries = load_npz_entries(path, ['boxes', 'keypoints', 'metadata'])
    boxes, keypoints, meta = entries['boxes'], entries['keypoints'], entries['metadata']
    if len(boxes) != len(keypoints) or not isinstance(meta, dict) or 'w' not in meta:
        raise UserError(f"'{path}': expected boxes and keypoints per frame and metadata {{'w', 'h'}}")
    frames, counts = [], []
    for frame_boxes, frame_points in zip(boxes, keypoints):
        b, k = np.asarray(frame_boxes[1], np.float64), np.asarray(frame_points[1], np.float64)
        people = []
        if len(b) and len(k):
            for box, points in zip(b, k):
                people.append(Person(points.T[:, [0, 1, 3]].copy(), float(box[4])))
                counts.append(points.shape[1])
        frames.append(people)
    return _file(path, 'detectron2', frames, counts, image_size=(int(meta['w']), int(meta['h'])))


def read_videopose3d_custom(path, video=None) -> KeypointFile:
    """data_2d_custom_<name>.npz: one video (``video``, or the only one) of pixels [N, 17, 2],
    every frame filled already; confidence 1."""
    entries = load_npz_entries(path, ['positions_2d', 'metadata'])
    positions, meta = entries['positions_2d'], entries['metadata']
    if not isinstance(positions, dict) or not positions:
        raise UserError(f"'{path}': positions_2d holds no video")
    names = sorted(positions)
    if video is None and len(names) > 1:
        raise UserError(f"'{path}' holds the videos {', '.join(names)}: name one with --viz-subject")
    name = video if video is not None else names[0]
    if name not in positions:
        raise UserError(f"'{path}' has no video {name!r}; choose --viz-subject from: {', '.join(names)}")
    entry = positions[name]
    pixels = np.asarray(entry.get('custom', [[]])[0] if isinstance(entry, dict) else [], np.float64)
    size = (meta.get('video_metadata') or {}).get(name) if isinstance(meta, dict) else None
    if pixels.ndim != 3 or pixels.shape[2] < 2 or not size:
        raise UserError(f"'{path}': expected positions_2d[{name!r}] = {{'custom': [(N, J, 2)]}} and metadata "
                        f"video_metadata[{name!r}] = {{'w', 'h'}}")
    frames = [[Person(np.concatenate([p[:, :2], np.ones((len(p), 1))], 1), 1.0, 0)] for p in pixels]
    result = _file(path, 'videopose3d', frames, [pixels.shape[1]], (int(size['w']), int(size['h'])), True)
    result.notes.append(f'video {name}')
    return result
