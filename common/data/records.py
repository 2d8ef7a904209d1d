"""The records every reader produces and the helpers readers share.

``Sequence`` is one camera stream; ``DatasetSpec`` what differs between datasets, so that the
engine never asks which dataset it has; ``DataConfig`` what the user asked to read. Readers
register under their names (``register_dataset``) and read .npz files through a restricted
unpickler (no code execution from a data file).
"""
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence as Seq, Tuple

import numpy as np

from common.errors import UserError
from common.data.skeleton import Skeleton


@dataclass
class Sequence:
    """One camera stream.

    pose2d -- [T, J, 2] normalised screen coordinates (float32)
    pose3d -- [T, J, 3] camera frame, metres, relative to the root joint (which is 0); None if 2D only
    trajectory -- [T, 3] the root joint's camera-frame position (metres), or None
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
    trajectory: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.pose2d)


@dataclass(frozen=True)
class DatasetSpec:
    """What differs between datasets.

    root_joint -- the layout's root: 0 in every stored 3D pose, its path in Sequence.trajectory
                  (None: the layout has no root joint)
    kps_left / kps_right -- 2D joints swapped by flipping (3D uses skeleton.joints_left/right)
    evaluator -- name of the evaluation protocol in common.eval.evaluation ('actionwise', 'mpi_inf_3dhp')
    fps -- frame rate of the streams
    release_units -- model name -> output unit of the checkpoints its release published for
    these files (and of our training as that release trains); other models: metres
    window_dataset -- the class that cuts its training windows (None: generators.WindowDataset;
    converted AMASS draws a camera per window)
    input_layout -- joint layout of the 2D when it differs from the skeleton's (COCO-17 detections
    of Human3.6M: 'coco_17', flipped with kps_left/right); None: the skeleton's
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
    window_dataset: Optional[Callable] = None
    input_layout: Optional[str] = None

    @property
    def keypoint_layout(self) -> str:
        """Joint layout of the 2D input."""
        return self.input_layout or self.skeleton.name

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
    test_only -- evaluation: the training streams are neither read nor checked (empty list);
    reader_options -- what only one reader reads (converted AMASS: frame_rate)."""
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
    reader_options: Dict[str, object] = field(default_factory=dict)


READERS: Dict[str, Callable[[DataConfig], tuple]] = {}


def register_dataset(*names):
    def decorate(reader):
        for name in names:
            READERS[name] = reader
        return reader
    return decorate


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


def expect_dict(value, path, what):
    if not isinstance(value, dict):
        raise UserError(f"'{path}': expected {what} to be a dict, found {type(value).__name__}")
    return value


def check_finite_2d(pose2d, path, where):
    """Refuse NaN/inf keypoints: they would silently poison training and every metric."""
    if not np.isfinite(pose2d).all():
        frames = np.unique(np.nonzero(~np.isfinite(pose2d))[0])
        raise UserError(f"'{path}' has NaN or inf 2D keypoints in {where} (frames {frames[:5].tolist()}"
                        f"{'...' if len(frames) > 5 else ''}); clean or interpolate them first")
