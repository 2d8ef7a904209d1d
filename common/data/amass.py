"""AMASS as Uplift-and-Upsample reads it: the files of the AMASS-to-3DHPE converter.

A converted AMASS folder holds one ``[DATASET].npz`` per AMASS sub-dataset (``CMU.npz``,
``SFU.npz``, ...), each with one entry ``positions_3d``: subject -> sequence ->
``{'positions_3d': [T, 17, 3] world metres (z up), 'frame_rate': 50.0}``. The 17 joints come
from the Human3.6M joint regressor, whose order differs from Human3.6M's in the legs.

``-d amass --root_path DIR`` (the release's ``--dataset amass --amass_path DIR``) reads every
file whose name matches a sub-dataset of the selected splits (regular expressions on sub-dataset,
subject and sequence, as the release's ``amass_splits``), reorders the joints into ``h36m_17``,
brings the sequences to the target frame rate and views them through the Human3.6M cameras
(common/data/amass_views.py): training windows draw a camera each, as the release does.
Subjects (``-str`` / ``-ste``) are split names (``train``, ``val``, ``train_debug``,
``val_debug``), sub-dataset names, or ``DATASET/SUBJECT/SEQUENCE`` regular expressions.
"""
import dataclasses
import os
import re
from typing import Dict, List, Sequence as Seq, Tuple

import numpy as np

from common.data.skeleton import AMASS_REORDER, AMASS_TO_H36M  # noqa: F401 (part of this module's API)
from common.data.amass_views import AMASS_SPEC, CameraDrawWindows, h36m_view_table, world_sequences
from common.data.records import DataConfig, expect_dict, load_npz_entries, register_dataset
from common.errors import UserError

# The release's splits: (sub-dataset, subject, sequence) regular expressions, matched in full.
_ALL = ('.*', '.*')
AMASS_SPLITS: Dict[str, Tuple[Tuple[str, str, str], ...]] = {
    'train': tuple((name,) + _ALL for name in (
        'CMU', 'DanceDB', 'MPILimits', 'TotalCapture', 'EyesJapanDataset', 'HUMAN4D', 'KIT', 'BMLhandball',
        'BMLmovi', 'BMLrub', 'EKUT', 'TCDhandMocap', 'ACCAD', 'Transitionsmocap')),
    'val': tuple((name,) + _ALL for name in ('MPIHDM05', 'SFU', 'MPImosh')),
    'train_debug': (('CMU',) + _ALL,),
    'val_debug': (('CMU',) + _ALL,),
}

# The converter's joint order: common.data.skeleton.AMASS_TO_H36M (read by the synthetic writer too).

DEFAULT_FRAME_RATE = 50
CONVERTER = 'convert AMASS with AMASS-to-3DHPE (src/convert.py --r 50)'


def split_patterns(names: Seq[str]) -> List[Tuple[str, str, str]]:
    """(sub-dataset, subject, sequence) regular expressions of split names, sub-dataset names
    or 'DATASET/SUBJECT/SEQUENCE' patterns."""
    patterns = []
    for name in names:
        if name in AMASS_SPLITS:
            patterns += AMASS_SPLITS[name]
            continue
        parts = name.split('/')
        if len(parts) > 3:
            raise UserError(f"AMASS selection '{name}': expected a split ({', '.join(AMASS_SPLITS)}), a "
                            f"sub-dataset name or DATASET/SUBJECT/SEQUENCE regular expressions")
        parts += ['.*'] * (3 - len(parts))
        for part in parts:
            try:
                re.compile(part)
            except re.error as err:
                raise UserError(f"AMASS selection '{name}': '{part}' is not a regular expression ({err})") from None
        patterns.append(tuple(parts))
    return patterns


def _matching(patterns, index, text):
    return [p for p in patterns if re.fullmatch(p[index], text) is not None]


def _positions(entry, where):
    if not isinstance(entry, dict) or 'positions_3d' not in entry or 'frame_rate' not in entry:
        raise UserError(f"{where}: expected {{'positions_3d': (T, 17, 3), 'frame_rate': 50.0}} "
                        f"(an AMASS-to-3DHPE file)")
    positions = np.asarray(entry['positions_3d'])
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise UserError(f'{where}: positions_3d has shape {positions.shape}, expected (T, 17, 3)')
    if positions.shape[1] != 17:
        raise UserError(f'{where} has {positions.shape[1]} joints, expected the 17 of the Human3.6M joint '
                        f'regressor: {CONVERTER}')
    return positions


def resample(positions: np.ndarray, frame_rate: float, target: int, where: str) -> List[np.ndarray]:
    """The sequence at ``target`` fps: every (frame_rate / target)-th frame, one stream per phase,
    so that the windows are those the release centres on every frame with its stride multiplied
    by that factor. The rate must be a multiple of the target (the release asserts 50 fps files)."""
    factor = frame_rate / target
    if factor < 1 or abs(factor - round(factor)) > 1e-6:
        raise UserError(f'{where} is at {frame_rate:g} fps, not a multiple of the target frame rate {target} '
                        f'(--amass_frame_rate): choose a divisor of {frame_rate:g}, or {CONVERTER}')
    factor = int(round(factor))
    return [positions[phase::factor] for phase in range(factor)]


def read_converted_amass(directory: str, patterns, frame_rate: int = DEFAULT_FRAME_RATE, phases=True):
    """[(sub-dataset, subject, sequence, world [T, 17, 3] float32 in h36m_17 order)] of every
    converted file of ``directory`` and sequence the patterns select (sorted file names, file
    order inside). ``phases`` False keeps only the first phase of a downsampled sequence."""
    if not os.path.isdir(directory):
        raise UserError(f"AMASS folder '{directory}' does not exist: give --amass_path DIR, the folder of the "
                        f"converted [DATASET].npz files ({CONVERTER})")
    files = sorted(name for name in os.listdir(directory) if name.endswith('.npz'))
    if not files:
        raise UserError(f"'{directory}' holds no converted AMASS file ([DATASET].npz such as CMU.npz): {CONVERTER}")
    out = []
    for name in files:
        dataset = name[:-len('.npz')]
        chosen = _matching(patterns, 0, dataset)
        if not chosen:
            continue
        path = os.path.join(directory, name)
        subjects = expect_dict(load_npz_entries(path, ['positions_3d'])['positions_3d'], path, 'positions_3d')
        for subject, sequences in subjects.items():
            by_subject = _matching(chosen, 1, str(subject))
            if not by_subject:
                continue
            for sequence, entry in expect_dict(sequences, path, f'positions_3d[{subject!r}]').items():
                if not _matching(by_subject, 2, str(sequence)):
                    continue
                where = f"'{path}': {subject}/{sequence}"
                world = _positions(entry, where).astype(np.float32)[:, list(AMASS_TO_H36M)]
                streams = resample(world, float(entry['frame_rate']), frame_rate, where)
                out += [(dataset, str(subject), str(sequence), s) for s in (streams if phases else streams[:1])]
    return out


@register_dataset('amass')
def load_amass(config: DataConfig):
    """Converted AMASS in ``config.root_path``: training streams from ``subjects_train`` (default the
    release's 'train' split), evaluation streams from ``subjects_test`` (default 'val')."""
    frame_rate = int(config.reader_options.get('frame_rate', DEFAULT_FRAME_RATE))
    views = h36m_view_table()
    rng = np.random.default_rng(config.seed)

    def fetch(names, train):
        found = read_converted_amass(config.root_path, split_patterns(names), frame_rate, phases=train)
        if not found:
            raise UserError(f"no converted AMASS sequence in '{config.root_path}' matches {list(names)} "
                            f"(files: {', '.join(sorted(os.listdir(config.root_path)))})")
        return world_sequences(found, views, rng, config.downsample)

    train = [] if config.test_only else fetch(config.subjects_train or ['train'], True)
    names = ['val'] if config.subjects_test is None else list(config.subjects_test)
    test = fetch(names, False) if names else []   # none: evaluation streams of another dataset (--dataset_val)
    return train, test, dataclasses.replace(AMASS_SPEC, fps=frame_rate)


@register_dataset('synthetic_amass')
def load_synthetic_amass(config: DataConfig):
    """A small converted-AMASS folder written by the embedded synthetic dataset (once), read as above."""
    from common.data.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic', 'amass'), kind='amass')
    return load_amass(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': 'amass'}))


__all__ = ['AMASS_SPLITS', 'AMASS_TO_H36M', 'CameraDrawWindows', 'load_amass', 'read_converted_amass',
           'resample', 'split_patterns']
