"""A small converted-AMASS folder for the embedded synthetic dataset: ``CMU.npz`` (in the release's
training split) and ``SFU.npz`` (in its validation split), in the AMASS-to-3DHPE layout exactly
(``positions_3d`` = subject -> sequence -> {'positions_3d': [T, 17, 3] float64 world metres in the
joint regressor's order, 'frame_rate': 50.0}), so that 3D-only pretraining runs with no download
and through the same reader as the real files (common/data/amass.py)."""
import os

import numpy as np

from common.data.skeleton import AMASS_TO_H36M, H36M_KEPT_JOINTS
from common.data.synthetic_actions import perform
from common.data.synthetic_motion import make_body

FILES = ('CMU.npz', 'SFU.npz')
# sub-dataset -> subject -> sequence -> action group performed
PLAN = {
    'CMU': {'01': {'01_01_poses': 'Walking', '01_02_poses': 'Greeting'},
            '02': {'02_01_poses': 'Eating', '02_02_poses': 'WalkDog'},
            '03': {'03_01_poses': 'Directions', '03_02_poses': 'Walking'}},
    'SFU': {'0005': {'0005_Walking001_poses': 'Walking', '0005_Jogging001_poses': 'WalkTogether'}},
}


def to_regressor_order(h36m_17: np.ndarray) -> np.ndarray:
    """[T, 17, 3] in h36m_17 order -> the converter's (regressor) order."""
    out = np.empty_like(h36m_17)
    out[:, list(AMASS_TO_H36M)] = h36m_17
    return out


def write_amass(directory, seed=0, frames=(150, 260)):
    """The files of FILES, deterministic in the seed."""
    rng = np.random.default_rng(seed + 2)
    for dataset, subjects in PLAN.items():
        positions = {}
        for subject, sequences in subjects.items():
            body = make_body(rng)
            positions[subject] = {}
            for name, group in sequences.items():
                world = perform(group, int(rng.integers(*frames)), body, rng)[:, list(H36M_KEPT_JOINTS)]
                positions[subject][name] = {'positions_3d': to_regressor_order(world).astype(np.float64),
                                            'frame_rate': 50.0}
        np.savez_compressed(os.path.join(directory, f'{dataset}.npz'), positions_3d=positions)
