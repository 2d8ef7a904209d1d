"""The embedded synthetic datasets, written in exactly the public file formats.

``ensure_synthetic(directory, 'h36m')`` writes the three VideoPose3D files
(``data_3d_h36m.npz``, ``data_2d_h36m_gt.npz``, ``data_2d_h36m_cpn_ft_h36m_dbb.npz``);
``ensure_synthetic(directory, 'amass')`` writes a small converted-AMASS folder
(common/data/synthetic_amass.py); ``ensure_synthetic(directory, '3dhp')`` writes P-STMO's ``data_train_3dhp.npz`` /
``data_test_3dhp.npz`` (plus ``data_test_3dhp_activity.npz`` with per-frame activity labels,
which the real files lack) and PoseRetNet's ``data_3d_mpii3d.npz`` / ``data_2d_mpii3d_gt.npz``.
They are then read by the very same readers as the real data. Motion comes from
common/data/synthetic_motion.py and the action recipes of common/data/synthetic_actions.py; generation
is deterministic in the seed.
"""
import os
import shutil
import tempfile

import numpy as np

from common.data.camera import load_h36m_cameras, project_to_2d, world_to_camera
from common.data.skeleton import H36M_17, H36M_KEPT_JOINTS
from common.data.synthetic_actions import perform
from common.data.synthetic_detections import detector_errors
from common.data.synthetic_motion import make_body
from common.data.virtual_cameras import sample_camera

SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8', 'S9', 'S11')
GROUPS = ('Directions', 'Discussion', 'Eating', 'Greeting', 'Phoning', 'Photo', 'Posing', 'Purchases',
          'Sitting', 'SittingDown', 'Smoking', 'Waiting', 'WalkDog', 'Walking', 'WalkTogether')
# Per-subject action names where they differ from 'X' / 'X 1' (the Human3.6M quirks).
NAME_QUIRKS = {
    'S1': {'Eating': ('Eating', 'Eating 2'), 'Sitting': ('Sitting 1', 'Sitting 2'),
           'SittingDown': ('SittingDown', 'SittingDown 2')},
    'S5': {'Directions': ('Directions 1', 'Directions 2'), 'Discussion': ('Discussion 2', 'Discussion 3'),
           'Photo': ('Photo', 'Photo 2')},
    'S9': {'Discussion': ('Discussion 1', 'Discussion 2')},
    'S11': {'Directions': ('Directions 1',), 'Phoning': ('Phoning 2', 'Phoning 3'),
            'Discussion': ('Discussion 1', 'Discussion 2')},
}
FILES = {'h36m': ('data_3d_h36m.npz', 'data_2d_h36m_gt.npz', 'data_2d_h36m_cpn_ft_h36m_dbb.npz'),
         '3dhp': ('data_train_3dhp.npz', 'data_test_3dhp.npz', 'data_test_3dhp_activity.npz',
                  'data_3d_mpii3d.npz', 'data_2d_mpii3d_gt.npz'),
         'amass': ('CMU.npz', 'SFU.npz')}
# 3DHP 17-joint order from the Human3.6M 17-joint order, and the 14 joints of PoseRetNet's files.
H36M_TO_3DHP = [10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9]
MPII3D_14_FROM_17 = [10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7, 1, 0]
ACTIVITY_GROUPS = {1: 'Walking', 2: 'Exercising', 3: 'Sitting', 4: 'Purchases', 5: 'Floor',
                   6: 'Running', 7: 'Greeting'}


def action_names(subject):
    """Two recordings per group for the test subjects, one (plus the quirky pairs) for the others,
    which keeps the files small."""
    names = []
    for group in GROUPS:
        default = (group, f'{group} 1') if subject in ('S9', 'S11') else (f'{group} 1' if len(group) % 3 == 0 else group,)
        names += NAME_QUIRKS.get(subject, {}).get(group, default)
    return names


def detector_noise(pixels, rng):
    """CPN-like 2D of the Human3.6M layout: ``detector_errors`` of a few pixels. pixels [T, 17, 2]."""
    return detector_errors(pixels, rng)[0].astype(np.float32)


def write_h36m(directory, seed=0, frames=(100, 180)):
    """The three Human3.6M files: seven subjects, 15 action groups with numbered variants, four
    real cameras, 50 fps."""
    rng = np.random.default_rng(seed)
    cameras = load_h36m_cameras()
    positions_3d, gt_2d, cpn_2d = {}, {}, {}
    for subject in SUBJECTS:
        body = make_body(rng)
        positions_3d[subject], gt_2d[subject], cpn_2d[subject] = {}, {}, {}
        for action in action_names(subject):
            world = perform(action.split(' ')[0], int(rng.integers(*frames)), body, rng)
            positions_3d[subject][action] = world
            streams = [project_to_2d(world_to_camera(world[:, list(H36M_KEPT_JOINTS)], cam.orientation,
                                                     cam.translation), cam) for cam in cameras[subject]]
            gt_2d[subject][action] = streams
            extra = [int(rng.integers(0, 4)) for _ in streams]  # detector streams run a few frames longer
            cpn_2d[subject][action] = [detector_noise(np.concatenate([s, s[-1:].repeat(e, 0)]), rng)
                                       for s, e in zip(streams, extra)]
    symmetry = [list(H36M_17.joints_left), list(H36M_17.joints_right)]
    np.savez_compressed(os.path.join(directory, FILES['h36m'][0]), positions_3d=positions_3d)
    np.savez_compressed(os.path.join(directory, FILES['h36m'][1]), positions_2d=gt_2d, metadata={
        'num_joints': 17, 'keypoints_symmetry': [[np.int64(j) for j in side] for side in symmetry]})
    np.savez_compressed(os.path.join(directory, FILES['h36m'][2]), positions_2d=cpn_2d, metadata={
        'layout_name': 'h36m', 'num_joints': 17, 'keypoints_symmetry': symmetry})


def _view_3dhp(world32, rng, size, focal=1500.0):
    """A pinhole view of a motion: (2D pixels [T, 17, 2], camera-frame 3D in mm [T, 17, 3]),
    both in the 3DHP 17-joint order."""
    world = world32[:, list(H36M_KEPT_JOINTS)][:, H36M_TO_3DHP].astype(np.float64)
    target = world[:, 14].mean(0)
    rotation, centre = sample_camera(rng, np.array([target[0], target[1], 0.9]), distance=(3.5, 5.0))
    camera = (world - centre) @ rotation.T
    pixels = camera[..., :2] / camera[..., 2:3] * focal + np.array(size) / 2
    return pixels.astype(np.float32), (camera * 1000).astype(np.float32)


def write_3dhp(directory, seed=0, frames=(150, 250)):
    """MPI-INF-3DHP stand-ins in both public layouts (see module docstring)."""
    rng = np.random.default_rng(seed + 1)
    train, test, activity = {}, {}, {}
    retnet_3d, retnet_2d = {'TS0': {}}, {'TS0': {}}
    for subject in (1, 2, 3):
        body = make_body(rng)
        for sequence in (1, 2):
            world = np.concatenate([perform(ACTIVITY_GROUPS[a], int(rng.integers(*frames)), body, rng)
                                    for a in rng.choice(list(ACTIVITY_GROUPS), 2, replace=False)])
            views = {}
            for cam in ('0', '1', '2', '4'):
                pose2d, pose3d = _view_3dhp(world, rng, (2048, 2048))
                views[cam] = {'data_2d': pose2d, 'data_3d': pose3d}
                name = f'subj{subject}_seq{sequence}_vid{cam}_seg0'
                retnet_3d['TS0'][name] = ((pose3d - pose3d[:, 14:15]) / 1000)[:, MPII3D_14_FROM_17].astype(np.float64)
                retnet_2d['TS0'][name] = [np.concatenate([pose2d[:, MPII3D_14_FROM_17],
                                                          np.ones_like(pose2d[:, MPII3D_14_FROM_17, :1])], -1)]
            train[f'S{subject} Seq{sequence}'] = [views, 25 if sequence == 1 else 50]
    for index in range(1, 7):
        body = make_body(rng)
        labels = rng.choice(list(ACTIVITY_GROUPS), 2, replace=False)
        parts = [perform(ACTIVITY_GROUPS[a], int(rng.integers(*frames)), body, rng) for a in labels]
        world = np.concatenate(parts)
        size = (2048, 2048) if index <= 4 else (1920, 1080)
        pose2d, pose3d = _view_3dhp(world, rng, size)
        valid = np.ones(len(world), np.float32)
        start = int(rng.integers(0, len(world) - 30))
        valid[start:start + int(rng.integers(5, 25))] = 0  # frames the annotators left out
        name = f'TS{index}'
        test[name] = {'data_2d': pose2d, 'data_3d': pose3d, 'valid': valid}
        activity[name] = np.repeat(labels, [len(p) for p in parts]).astype(np.int64)
        relative = ((pose3d - pose3d[:, 14:15]) / 1000)[:, MPII3D_14_FROM_17].astype(np.float64)
        retnet_3d[name] = {f'subj{index}_seg0': relative}
        retnet_2d[name] = {f'subj{index}_seg0': [np.concatenate([pose2d[:, MPII3D_14_FROM_17], valid[:, None, None]
                                                                 .repeat(14, 1)], -1)]}
    np.savez_compressed(os.path.join(directory, FILES['3dhp'][0]), data=train)
    np.savez_compressed(os.path.join(directory, FILES['3dhp'][1]), data=test)
    np.savez_compressed(os.path.join(directory, FILES['3dhp'][2]), **activity)
    np.savez_compressed(os.path.join(directory, FILES['3dhp'][3]), positions_3d=retnet_3d)
    np.savez_compressed(os.path.join(directory, FILES['3dhp'][4]), positions_2d=retnet_2d, metadata={
        'layout_name': 'mpii3d', 'num_joints': 14, 'keypoints_symmetry': [[3, 4, 5, 9, 10, 11], [0, 1, 2, 6, 7, 8]]})


def ensure_synthetic(directory, kind='h36m', seed=0):
    """Write the synthetic files of ``kind`` ('h36m' or '3dhp') into ``directory`` unless they are
    all there; returns ``directory``. Files are generated in a temporary folder and moved in
    with atomic renames, so an interrupted run (or several ranks at once) never leaves half a file."""
    names = FILES[kind]
    if not all(os.path.isfile(os.path.join(directory, n)) for n in names):
        _write_synthetic(directory, kind, seed)
    if kind == 'h36m':  # the COCO-layout detections, made from the 3D file (common/data/synthetic_coco.py)
        from common.data.synthetic_coco import ensure_coco_detections
        ensure_coco_detections(directory, seed)
    return directory


def _write_synthetic(directory, kind, seed):
    names = FILES[kind]
    os.makedirs(directory, exist_ok=True)
    print(f'INFO: writing the synthetic {kind} dataset to {directory}/ (once)', flush=True)
    staging = tempfile.mkdtemp(prefix='.synthetic-', dir=directory)
    try:
        if kind == 'amass':
            from common.data.synthetic_amass import write_amass
            write_amass(staging, seed)
        else:
            (write_h36m if kind == 'h36m' else write_3dhp)(staging, seed)
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
