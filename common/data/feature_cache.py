"""A memory-mapped cache of frozen-backbone feature maps, so that training a head that samples
them runs at lifter speed instead of running the backbone on every image of every epoch.

Layout of one split (``DIR/train``, ``DIR/test``)::

    level_0.npy ... level_3.npy   [N, V, C_l, H_l, W_l] (float16 or float32), opened with mmap
    meta.json                     written last: format, backbone, weights fingerprint, label
                                  file identity, views, dtype, shapes

View 0 holds the maps of the crop, view 1 (when built with ``views=2``) those of its mirror
image, which the flip augmentation and the flip test need: a CNN's maps of a mirrored image are
not the mirrored maps. A cache whose weights fingerprint or labels differ from the run's is
refused; one without ``meta.json`` (an interrupted build) is rebuilt.
"""
import hashlib
import json
import os
from typing import Callable, List, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.errors import UserError

FORMAT = 'unilift-feature-cache-1'
DTYPES = ('float16', 'float32')


def labels_identity(table) -> dict:
    """What ties a cache to a label table: its image count and a hash of its images and boxes."""
    digest = hashlib.sha256('\n'.join(table.images).encode())
    digest.update(np.ascontiguousarray(table.center, np.float64).tobytes())
    return {'images': len(table), 'labels_sha256': digest.hexdigest()}


def _meta_path(directory):
    return os.path.join(directory, 'meta.json')


def read_meta(directory):
    """The cache's meta dict, or None where no complete cache is."""
    try:
        with open(_meta_path(directory)) as handle:
            meta = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"feature cache '{directory}' has an unreadable meta.json ({err}): delete the folder "
                        f"to rebuild it") from None
    if meta.get('format') != FORMAT:
        raise UserError(f"'{directory}' is not a feature cache of this version (format {meta.get('format')!r}): "
                        f"delete it or pass another --feature-cache DIR")
    return meta


def check_meta(meta, directory, fingerprint: str, identity: dict, views: int):
    """Refuse a cache made from other weights, other labels, or without the views asked for."""
    if meta['weights_sha256'] != fingerprint:
        raise UserError(f"feature cache '{directory}' was built with other backbone weights (sha256 "
                        f"{meta['weights_sha256'][:12]}, this run's {fingerprint[:12]}): it is stale; delete it to "
                        f"rebuild it, or pass another --feature-cache DIR")
    if {k: meta[k] for k in identity} != identity:
        raise UserError(f"feature cache '{directory}' was built from other labels ({meta['images']} images, "
                        f"this run has {identity['images']}): delete it to rebuild it, or pass another "
                        f"--feature-cache DIR")
    if meta['views'] < views:
        raise UserError(f"feature cache '{directory}' holds no mirrored views, which flip augmentation and the "
                        f"flip test need: delete it to rebuild it, or turn both off (-no-da -no-tta)")


def build_cache(directory, loader, extract: Callable, fingerprint: str, identity: dict, backbone: str,
                views: int = 2, dtype: str = 'float16', description='feature cache'):
    """Run ``extract`` once over every batch of ``loader`` and store the maps.

    loader yields (crops [B, H, W, 3] uint8, ..., indices [B]); extract(crops, mirrored) -> list
    of maps [B, C, H, W]. Returns the meta dict."""
    if dtype not in DTYPES:
        raise UserError(f"--cache-dtype {dtype}: choose one of {', '.join(DTYPES)}")
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(_meta_path(directory)):
        os.remove(_meta_path(directory))   # the old cache is being replaced: never half old, half new
    count, arrays = identity['images'], None
    for batch in tqdm(loader, desc=description, unit='batch', leave=False, disable=None):
        crops, indices = batch[0], batch[-1].numpy()
        per_view = [extract(crops, mirrored=bool(view)) for view in range(views)]
        if arrays is None:
            arrays = [np.lib.format.open_memmap(os.path.join(directory, f'level_{level}.npy'), mode='w+', dtype=dtype,
                                                shape=(count, views, *maps.shape[1:]))
                      for level, maps in enumerate(per_view[0])]
        for view, maps in enumerate(per_view):
            for array, level_map in zip(arrays, maps):
                array[indices, view] = level_map.detach().cpu().numpy().astype(dtype)
    for array in arrays or []:
        array.flush()
    meta = {'format': FORMAT, 'backbone': backbone, 'weights_sha256': fingerprint, **identity, 'views': views,
            'dtype': dtype, 'shapes': [list(a.shape[2:]) for a in arrays or []]}
    with open(_meta_path(directory) + '.tmp', 'w') as handle:
        json.dump(meta, handle, indent=1)
    os.replace(_meta_path(directory) + '.tmp', _meta_path(directory))
    return meta


class CachedFeatures(torch.utils.data.Dataset):
    """The samples of a label table with their cached maps instead of their images.

    item -> (list of maps [V, C_l, H_l, W_l] float32, keypoints_2d [17, 2], crop_pixels [17, 2],
    target [1, 17, 3], index)."""

    def __init__(self, directory, table, meta):
        self.directory, self.table, self.meta = directory, table, meta
        self._levels: List[np.ndarray] = []

    def levels(self) -> Sequence[np.ndarray]:
        if not self._levels:   # opened lazily, so every DataLoader worker maps the files itself
            self._levels = [np.load(os.path.join(self.directory, f'level_{level}.npy'), mmap_mode='r')
                            for level in range(len(self.meta['shapes']))]
        return self._levels

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        t = self.table
        maps = [torch.from_numpy(np.array(level[index], np.float32)) for level in self.levels()]
        return (maps, torch.from_numpy(t.keypoints_2d[index]), torch.from_numpy(t.crop_pixels[index]),
                torch.from_numpy(t.pose3d[index][None]), index)
