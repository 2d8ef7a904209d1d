"""From a keypoint file to one person's 2D over every frame: person selection, gap filling,
the video size check, and frame-rate resampling.

Gaps are filled by VideoPose3D's ``prepare_data_2d_custom.py`` rule: every coordinate is
``np.interp`` over the frames where it was found (linear between them, the first and last found
value held before and after), in float64, stored as float32. That script fills whole frames; a
joint a tool marks as not found (OpenPose's 0, 0, 0) is filled alike over the frames that have it.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from common.data.wild.readers import KeypointFile
from common.errors import UserError


@dataclass
class PersonTrack:
    """keypoints -- [T, K, 2] pixels, float32, every frame filled; confidence -- [T, K] (0 where
    filled); filled_frames -- frames without the person (interpolated); person -- the track id
    followed, or None (the highest-scoring person of each frame)."""
    keypoints: np.ndarray
    confidence: np.ndarray
    layout: str
    filled_frames: List[int]
    person: Optional[int]

    def __len__(self):
        return len(self.keypoints)


def track_ids(keypoints: KeypointFile):
    """{track id: frames it appears in}."""
    counts = {}
    for people in keypoints.frames:
        for track in {p.track for p in people if p.track is not None}:
            counts[track] = counts.get(track, 0) + 1
    return counts


def select_person(keypoints: KeypointFile, person: Optional[int] = None) -> Tuple[np.ndarray, Optional[int]]:
    """([T, K, 3] with NaN x, y where the person is absent, the track followed). Tracked files: the
    track ``person``, by default the one in most frames (ties: the lowest id). Untracked files: the
    person with the highest score in each frame (ties: the first), as VideoPose3D's script."""
    frames, joints = len(keypoints.frames), None
    for people in keypoints.frames:
        if people:
            joints = len(people[0].keypoints)
            break
    if joints is None:
        raise UserError(f"'{keypoints.path}': no person in any frame; check the detector's output (or the video)")
    out = np.full((frames, joints, 3), np.nan)
    if keypoints.tracked:
        counts = track_ids(keypoints)
        if person is None:
            person = min(counts, key=lambda t: (-counts[t], t))
        elif person not in counts:
            raise UserError(f"'{keypoints.path}' has no person {person}; its track ids (frames): "
                            + ', '.join(f'{t} ({n})' for t, n in sorted(counts.items())))
        for t, people in enumerate(keypoints.frames):
            mine = [p for p in people if p.track == person]
            if mine:
                out[t] = mine[0].keypoints
        return out, person
    if person is not None:
        raise UserError(f"'{keypoints.path}' has no track ids ({keypoints.tool} without tracking), so --person "
                        f"cannot pick one: drop --person (the highest-scoring person of each frame is taken) "
                        f"or run the tool with tracking")
    for t, people in enumerate(keypoints.frames):
        if people:
            out[t] = people[int(np.argmax([p.score for p in people]))].keypoints
    return out, None


def fill_gaps(selected: np.ndarray, path: str = '') -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """[T, K, 3] (NaN: absent; (0, 0, 0): joint not found) -> (pixels [T, K, 2] float32 filled by the
    VideoPose3D rule, confidence [T, K] with 0 where filled, frames without the person)."""
    absent_frames = np.isnan(selected[..., 0]).all(1)
    missing = np.isnan(selected[..., 0]) | (selected == 0).all(-1)
    if missing.all():
        raise UserError(f"'{path}': no person in any frame; check the detector's output (or the video)")
    pixels = selected[..., :2].astype(np.float64).copy()
    frames = np.arange(len(selected))
    centre = None
    for joint in range(selected.shape[1]):
        found = ~missing[:, joint]
        if not found.any():  # never seen: placed at the person's centre, with no confidence
            if centre is None:
                found_any = ~missing.all(1)
                centre = np.zeros((len(selected), 2))
                centre[found_any] = [pixels[t][~missing[t]].mean(0) for t in np.nonzero(found_any)[0]]
                centre = _interp_columns(frames, centre, found_any)
            pixels[:, joint] = centre
            continue
        pixels[:, joint] = _interp_columns(frames, pixels[:, joint], found)
    confidence = np.where(missing, 0.0, np.nan_to_num(selected[..., 2])).astype(np.float32)
    return pixels.astype(np.float32), confidence, np.nonzero(absent_frames)[0].tolist()


def _interp_columns(frames, values, found):
    """np.interp of each column of values [T, C] over the frames where ``found``."""
    return np.stack([np.interp(frames, frames[found], values[found, c]) for c in range(values.shape[1])], -1)


def person_track(keypoints: KeypointFile, person: Optional[int] = None) -> PersonTrack:
    """One person over every frame of the file, gaps filled."""
    selected, followed = select_person(keypoints, person)
    pixels, confidence, filled = fill_gaps(selected, keypoints.path)
    if len(pixels) < 2:
        raise UserError(f"'{keypoints.path}' has a single frame: lifting needs a video (a sequence of frames); "
                        f"give the keypoints of every frame")
    return PersonTrack(pixels, confidence, keypoints.layout, filled, followed)


def check_video_size(track: PersonTrack, size: Tuple[int, int], path: str, source: str, margin: float = 0.25):
    """A UserError when the keypoints reach well beyond a ``size`` = (width, height) frame: the
    size is not that of the video the keypoints come from."""
    width, height = size
    if width <= 0 or height <= 0:
        raise UserError(f'video size {width}x{height} ({source}) is not a size: give --video-size WxH')
    low, high = track.keypoints.reshape(-1, 2).min(0), track.keypoints.reshape(-1, 2).max(0)
    beyond = (low < -margin * np.array([width, height])) | (high > (1 + margin) * np.array([width, height]))
    if beyond.any():
        raise UserError(f"the keypoints of '{path}' reach x {low[0]:.0f}..{high[0]:.0f}, "
                        f"y {low[1]:.0f}..{high[1]:.0f} px, "
                        f"beyond a {width}x{height} frame ({source}): give the size of the video they come "
                        f"from (--video-size WxH)")


def resample(values: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """[T, ...] sampled at ``source_fps`` -> the same time span sampled at ``target_fps``, linear."""
    frames = len(values)
    times = np.arange(frames) / source_fps
    count = max(2, int(round((frames - 1) * target_fps / source_fps)) + 1)
    new_times = np.linspace(0, times[-1], count)
    flat = values.reshape(frames, -1).astype(np.float64)
    out = np.stack([np.interp(new_times, times, flat[:, c]) for c in range(flat.shape[1])], -1)
    return out.reshape((count,) + values.shape[1:]).astype(values.dtype)
