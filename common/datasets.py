"""Sequences, dataset descriptions and the Human3.6M reader (VideoPose3D files, unchanged).

Every reader returns ``(train, test, spec)``: two lists of :class:`Sequence` (one
camera stream each) and a :class:`DatasetSpec` holding everything that differs
between datasets, so that the engine never asks which dataset it has.
"""
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence as Seq, Tuple

import numpy as np

from common.camera import load_h36m_cameras, normalize_screen_coordinates, world_to_camera
from common.errors import UserError
from common.skeleton import H36M_17, Skeleton, h36m_raw_to_17


@dataclass
class Sequence:
    """One camera stream.

    pose2d -- [T, J, 2] normalised screen coordinates (float32)
    pose3d -- [T, J, 3] camera frame, metres; joints relative to the root, the root joint
              keeps the absolute trajectory (zeroed before losses and metrics); None if 2D only
    valid -- [T] bool, frames that are scored (3DHP); None means all
    group -- evaluation group (Human3.6M action group, 3DHP test sequence)
    intrinsics -- [9] normalised camera intrinsics, or None
    image_size -- (width, height) in pixels of the camera the 2D came from
    """
    pose2d: np.ndarray
    pose3d: Optional[np.ndarray]
    subject: str
    action: str
    camera: int
    group: str
    intrinsics: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None
    image_size: Tuple[int, int] = (1000, 1000)
    labels: Optional[np.ndarray] = None  # per-frame activity labels (3DHP), if known

    def __len__(self):
        return len(self.pose2d)


@dataclass(frozen=True)
class DatasetSpec:
    """What differs between datasets.

    root_joint -- joint carrying the trajectory, zeroed in targets (None: 3D already relative)
    kps_left / kps_right -- 2D joints swapped by flipping (3D uses skeleton.joints_left/right)
    evaluator -- name of the evaluation protocol in common.evaluation ('actionwise', 'mpi_inf_3dhp')
    fps -- frame rate of the streams
    release_units -- model name -> output unit of the checkpoints its release published for
    these files (and of our training as that release trains); other models: metres
    """
    name: str
    skeleton: Skeleton
    root_joint: Optional[int]
    kps_left: Tuple[int, ...]
    kps_right: Tuple[int, ...]
    evaluator: str = 'actionwise'
    fps: int = 50
    joint_index_3dhp: Optional[Tuple[int, ...]] = None  # joint order map for 3DHP-protocol groups
    release_units: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_joints(self):
        return self.skeleton.num_joints

    @property
    def flip_pairs(self):
        return list(self.kps_left), list(self.kps_right)


@dataclass
class DataConfig:
    """dataset -- reader name; root_path -- data directory; keypoints -- 2D source (-k);
    subjects_train / subjects_test -- subject lists; actions -- prefix filters or None;
    downsample -- keep every k-th frame; subset -- fraction of each training stream kept (a contiguous clip);
    test_only -- evaluation: the training streams are neither read nor checked (empty list)."""
    dataset: str = 'h36m'
    root_path: str = 'data'
    keypoints: str = 'cpn_ft_h36m_dbb'
    subjects_train: Optional[Seq[str]] = None  # None: the dataset's standard split
    subjects_test: Optional[Seq[str]] = None
    actions: Optional[Seq[str]] = None
    downsample: int = 1
    subset: float = 1.0
    seed: int = 0
    virtual_cameras: int = 0  # > 0: 3D-only data, 2D made through this many random cameras per sequence
    test_only: bool = False


READERS: Dict[str, Callable[[DataConfig], tuple]] = {}


def register_dataset(*names):
    def decorate(reader):
        for name in names:
            READERS[name] = reader
        return reader
    return decorate


def load_dataset(config: DataConfig):
    """(train sequences, test sequences, DatasetSpec) for ``config.dataset``."""
    import common.mpi_inf_3dhp  # noqa: F401  (registers the 3DHP readers)
    if config.dataset not in READERS:
        raise UserError(f"unknown dataset '{config.dataset}'; choose one of: {', '.join(sorted(READERS))}")
    return READERS[config.dataset](config)


# ----------------------------------------------------------------------------- files

def find_data_file(root_path: str, filename: str, origin: str) -> str:
    """Path of ``filename`` in the data directory, or in P-STMO's ``dataset/`` layout."""
    path = os.path.join(root_path, filename)
    if os.path.isfile(path):
        return path
    fallback = os.path.join('dataset', filename)
    if os.path.isfile(fallback):
        print(f"INFO: {filename} not in {root_path}/, reading it from dataset/ (P-STMO layout)")
        return fallback
    raise UserError(f"data file '{path}' not found: {origin} (or run with -d synthetic to use the "
                    f"embedded synthetic dataset)")


class _DatasetUnpickler(pickle.Unpickler):
    """Unpickles the dicts and lists of arrays the dataset files hold, and nothing else: a
    dataset file from the internet cannot make loading run code."""
    _ALLOWED = {('collections', 'OrderedDict'), ('builtins', 'dict'), ('builtins', 'list'),
                ('builtins', 'tuple'), ('builtins', 'set'), ('builtins', 'frozenset'), ('builtins', 'slice')}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED or (
                module.split('.')[0] == 'numpy' and name in ('_reconstruct', 'scalar', 'ndarray', 'dtype')) or (
                module in ('numpy.dtypes', 'numpy') and name.endswith('DType')):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refers to {module}.{name}, which a dataset file never needs')


def _read_npy(handle):
    """One .npy member; object arrays go through the restricted unpickler."""
    major, _ = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(handle)
    if dtype.hasobject:
        return _DatasetUnpickler(handle, encoding='latin1').load()
    count = int(np.prod(shape)) if shape else 1
    data = np.frombuffer(handle.read(count * dtype.itemsize), dtype=dtype, count=count)
    return data.reshape(shape[::-1]).T if fortran else data.reshape(shape)


def load_npz_entries(path: str, keys: Seq[str]) -> Dict[str, object]:
    """Read the (pickled, 0-d) entries of a dataset .npz safely, with one-line errors for bad files."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith('.npy')}
            missing = [k for k in keys if k not in members]
            if missing:
                raise UserError(f"'{path}' has entries {sorted(members)}, expected {list(keys)}")
            out = {}
            for key in keys:
                with archive.open(members[key]) as handle:
                    value = _read_npy(io.BufferedReader(handle))
                if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
                    value = value.item()
                out[key] = value
            return out
    except UserError:
        raise
    except pickle.UnpicklingError as err:
        raise UserError(f"'{path}' is refused or corrupted: {err}") from None
    except Exception as err:  # zlib, truncation, bad headers: all mean a damaged file
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"'{path}' is not a readable .npz archive (truncated or corrupted?): {detail}") from None


def _expect_dict(value, path, what):
    if not isinstance(value, dict):
        raise UserError(f"'{path}': expected {what} to be a dict, found {type(value).__name__}")
    return value


def check_finite_2d(pose2d, path, where):
    """Refuse NaN/inf keypoints: they would silently poison training and every metric."""
    if not np.isfinite(pose2d).all():
        frames = np.unique(np.nonzero(~np.isfinite(pose2d))[0])
        raise UserError(f"'{path}' has NaN or inf 2D keypoints in {where} (frames {frames[:5].tolist()}"
                        f"{'...' if len(frames) > 5 else ''}); clean or interpolate them first")


# ----------------------------------------------------------------------------- Human3.6M

H36M_SPEC = DatasetSpec(name='h36m', skeleton=H36M_17, root_joint=0,
                        kps_left=H36M_17.joints_left, kps_right=H36M_17.joints_right)

H36M_TRAIN = ('S1', 'S5', 'S6', 'S7', 'S8')
H36M_TEST = ('S9', 'S11')
H36M_ORIGIN = 'prepare it with VideoPose3D\'s data/prepare_data_h36m.py (see README "Data")'


def read_h36m_3d(path):
    """subject -> action -> [N, 17, 3] world-frame metres (the 17 kept joints)."""
    positions = _expect_dict(load_npz_entries(path, ['positions_3d'])['positions_3d'], path, 'positions_3d')
    out = {}
    for subject, actions in positions.items():
        out[subject] = {}
        for action, array in _expect_dict(actions, path, f'positions_3d[{subject!r}]').items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 3 or array.shape[1:] not in ((32, 3), (17, 3)):
                raise UserError(f"'{path}': {subject}/{action} has shape {array.shape}, expected (N, 32, 3)")
            out[subject][action] = h36m_raw_to_17(array) if array.shape[1] == 32 else array
    return out


def read_h36m_2d(path, num_joints=17):
    """(positions_2d subject -> action -> list of [N, J, 2] pixels, (kps_left, kps_right))."""
    entries = load_npz_entries(path, ['positions_2d', 'metadata'])
    positions = _expect_dict(entries['positions_2d'], path, 'positions_2d')
    metadata = _expect_dict(entries['metadata'], path, 'metadata')
    symmetry = metadata.get('keypoints_symmetry')
    if symmetry is None or len(symmetry) != 2:
        raise UserError(f"'{path}': metadata lacks keypoints_symmetry [[left...], [right...]]")
    kps_left, kps_right = ([int(j) for j in side] for side in symmetry)
    for subject, actions in positions.items():
        for action, streams in _expect_dict(actions, path, f'positions_2d[{subject!r}]').items():
            for cam, stream in enumerate(streams):
                if np.ndim(stream) != 3 or np.shape(stream)[1:] != (num_joints, 2):
                    raise UserError(f"'{path}': {subject}/{action} camera {cam} has shape {np.shape(stream)}, "
                                    f"expected (N, {num_joints}, 2) for this {num_joints}-joint dataset")
    return positions, (tuple(kps_left), tuple(kps_right))


def _select(names, filters):
    return [n for n in names if filters is None or any(n.startswith(f) for f in filters)]


def load_3d_only(config: DataConfig, path3d):
    """Streams from a 3D file alone (AMASS-style pretraining): every sequence is seen by
    ``config.virtual_cameras`` random virtual cameras; no 2D file is read."""
    from common.virtual_cameras import virtual_streams
    poses3d = read_h36m_3d(path3d)
    subjects_train = list(config.subjects_train if config.subjects_train is not None else
                          [s for s in poses3d if s not in H36M_TEST])
    subjects_test = list(config.subjects_test if config.subjects_test is not None else
                         [s for s in H36M_TEST if s in poses3d])
    rng = np.random.default_rng(config.seed)

    def fetch(subjects):
        sequences = []
        for subject in subjects:
            if subject not in poses3d:
                raise UserError(f"subject {subject} not in '{path3d}' (has {', '.join(poses3d)})")
            for action in _select(sorted(poses3d[subject]), config.actions):
                world = poses3d[subject][action][::config.downsample]
                for index, (pose3d, pose2d, intrinsics) in enumerate(
                        virtual_streams(world, config.virtual_cameras, rng)):
                    sequences.append(Sequence(pose2d=pose2d, pose3d=pose3d, subject=subject, action=action,
                                              camera=index, group=action.split(' ')[0], intrinsics=intrinsics,
                                              image_size=(1000, 1000)))
        return sequences

    return ([] if config.test_only else fetch(subjects_train)), fetch(subjects_test), H36M_SPEC


@register_dataset('h36m')
def load_h36m(config: DataConfig):
    """Human3.6M in the VideoPose3D layout: data_3d_h36m.npz + data_2d_h36m_<keypoints>.npz."""
    root = config.root_path
    if config.virtual_cameras:
        return load_3d_only(config, find_data_file(root, 'data_3d_h36m.npz', H36M_ORIGIN))
    path3d = find_data_file(root, 'data_3d_h36m.npz', H36M_ORIGIN)
    path2d = find_data_file(root, f'data_2d_h36m_{config.keypoints}.npz',
                            H36M_ORIGIN if config.keypoints in ('gt', 'cpn_ft_h36m_dbb') else
                            f"unknown -k '{config.keypoints}': no such 2D file")
    cameras = load_h36m_cameras()
    poses3d = read_h36m_3d(path3d)
    poses2d, (kps_left, kps_right) = read_h36m_2d(path2d)
    spec = DatasetSpec(name='h36m', skeleton=H36M_17, root_joint=0, kps_left=kps_left, kps_right=kps_right)

    subjects_train = list(config.subjects_train if config.subjects_train is not None else H36M_TRAIN)
    subjects_test = list(config.subjects_test if config.subjects_test is not None else H36M_TEST)
    if config.test_only:
        subjects_train = []
    # 3D file: world -> camera per stream, root keeps the trajectory; 2D trimmed to mocap length.
    for subject in subjects_train + subjects_test:
        if subject not in poses3d:
            raise UserError(f"subject {subject} not in '{path3d}' (has {', '.join(poses3d)})")
        if subject not in poses2d:
            raise UserError(f"subject {subject} not in '{path2d}'")
        for action, world in poses3d[subject].items():
            if action not in poses2d[subject]:
                raise UserError(f"'{path2d}' lacks action '{action}' of subject {subject}")
            streams = poses2d[subject][action]
            if len(streams) != 4:
                raise UserError(f"'{path2d}': {subject}/{action} has {len(streams)} camera streams, expected 4")
            for cam, stream in enumerate(streams):
                if len(stream) < len(world):
                    raise UserError(f"'{path2d}': {subject}/{action} camera {cam} has {len(stream)} frames, "
                                    f"fewer than the {len(world)} of the 3D file")

    def fetch(subjects, action_filter, subset=1.0, rng=None):
        sequences = []
        for subject in subjects:
            for action in _select(list(poses2d[subject]), action_filter):
                if action not in poses3d[subject]:
                    continue
                world = poses3d[subject][action]
                for cam_index, camera in enumerate(cameras[subject]):
                    pos3d = world_to_camera(world, camera.orientation, camera.translation)
                    pos3d[:, 1:] -= pos3d[:, :1]
                    stream = np.asarray(poses2d[subject][action][cam_index][:len(world)], np.float32)
                    check_finite_2d(stream, path2d, f'{subject}/{action} camera {cam_index}')
                    pose2d = normalize_screen_coordinates(stream, camera.res_w, camera.res_h)
                    start, stop = 0, len(pose2d)
                    if subset < 1:  # a contiguous clip of each stream, as VideoPose3D's --subset
                        n_frames = max(1, int(round(len(pose2d) * subset)))
                        start = int(rng.integers(0, len(pose2d) - n_frames + 1))
                        stop = start + n_frames
                    step = config.downsample
                    sequences.append(Sequence(
                        pose2d=pose2d[start:stop:step], pose3d=pos3d[start:stop:step], subject=subject,
                        action=action, camera=cam_index, group=action.split(' ')[0],
                        intrinsics=camera.normalized_intrinsics(), image_size=(camera.res_w, camera.res_h)))
        return sequences

    rng = np.random.default_rng(config.seed)
    train = fetch(subjects_train, config.actions, config.subset, rng)
    test = fetch(subjects_test, config.actions)
    if config.actions and not test:
        raise UserError(f"no test sequence matches the action filter {list(config.actions)}")
    return train, test, spec


@register_dataset('synthetic')
def load_synthetic_h36m(config: DataConfig):
    """The embedded synthetic dataset: generated into <root_path>/synthetic on first use,
    then read by the very same Human3.6M reader."""
    from common.synthetic import ensure_synthetic
    directory = ensure_synthetic(os.path.join(config.root_path, 'synthetic'), kind='h36m')
    train, test, spec = load_h36m(DataConfig(**{**config.__dict__, 'root_path': directory, 'dataset': 'h36m'}))
    return train, test, spec


# ----------------------------------------------------------------------------- other inputs

def read_custom_keypoints(path):
    """The videos of a VideoPose3D custom 2D file (data_2d_custom_*.npz) as 2D-only Sequences
    (subject = video name, action 'custom'), their (left, right) 2D joints and layout name."""
    if not os.path.isfile(path):
        raise UserError(f"custom keypoint file '{path}' does not exist")
    positions, metadata = load_npz_entries(path, ['positions_2d', 'metadata']).values()
    symmetry, sequences = metadata.get('keypoints_symmetry'), []
    for video, entry in positions.items():
        size = metadata.get('video_metadata', {}).get(video)
        pixels = np.asarray(entry.get('custom', [[]])[0] if isinstance(entry, dict) else [], np.float32)
        if pixels.ndim != 3 or pixels.shape[2] < 2 or not size or symmetry is None or len(symmetry) != 2:
            raise UserError(f"'{path}': expected positions_2d[{video!r}] = {{'custom': [(N, J, 2)]}}, "
                            f"metadata video_metadata[{video!r}] = {{'w', 'h'}} and keypoints_symmetry")
        width, height = int(size['w']), int(size['h'])
        sequences.append(Sequence(normalize_screen_coordinates(pixels[..., :2], width, height), None, str(video),
                                  'custom', 0, 'custom', image_size=(width, height)))
    sides = tuple(tuple(int(j) for j in side) for side in symmetry or ((), ()))
    return sequences, sides, metadata.get('layout_name', '')


def read_predictions(path, num_joints):
    """[T, J, 3] camera-frame poses saved by --viz-export (.npy) or in an .npz."""
    if not os.path.isfile(path):
        raise UserError(f"predictions file '{path}' does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):  # the first array of an .npz
            loaded = loaded[loaded.files[0]]
    except (ValueError, OSError, IndexError) as err:
        raise UserError(f"'{path}' is not a readable .npy/.npz array: {str(err).splitlines()[0]}") from None
    if loaded.ndim != 3 or loaded.shape[1:] != (num_joints, 3):
        raise UserError(f"'{path}' holds shape {loaded.shape}, expected (T, {num_joints}, 3)")
    return loaded.astype(np.float32)
