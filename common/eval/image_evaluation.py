"""Evaluation of the models that lift from image features (Context-Aware PoseFormer) on an
H36M-Toolbox label table, read either from the images or from a feature cache.

Every image is predicted once (twice with the flip test: the mirrored view's prediction is
mirrored back and averaged, as the release does); the predictions are then gathered into their
streams (subject, action, sub-action, camera, in frame order) and scored by the Human3.6M
action-wise protocol: per action, both sub-actions merged, frame-weighted; the headline numbers
are the mean of the action means (the release's "avg p1 / p2").
"""
import numpy as np
import torch
from tqdm import tqdm

from common.data.records import Sequence
from common.dist import DistInfo, gather_objects
from common.errors import UserError
from common.eval.evaluation import EVALUATORS


def user_error_from_worker(err: Exception):
    """A UserError raised in a DataLoader worker arrives with the worker's traceback inside its
    message; keep the one line the user needs."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else str(err)
    return UserError(last.split('UserError: ', 1)[-1])


class ViewMaker:
    """Turns a loader batch into the inputs of one view: (keypoints_2d [B, J, 2], crop_pixels
    [B, J, 2], feature maps, target [B, 1, J, 3]) on ``device``; ``mirrored`` gives the
    horizontally flipped view. ``cached``: the batch holds cached maps [B, V, C, H, W] per level,
    else uint8 crops that go through the network's backbone."""

    def __init__(self, network, cached: bool, device):
        self.network, self.cached, self.device = network, cached, device

    def __call__(self, batch, mirrored=False):
        from models.context_pose import mirror_batch, mirror_keypoints, mirror_pose_3d
        source, keypoints_2d, crop_pixels, target = (
            [b.to(self.device) for b in batch[0]] if self.cached else batch[0].to(self.device),
            *(b.to(self.device) for b in batch[1:4]))
        if self.cached:
            features = [level[:, 1 if mirrored else 0] for level in source]
            if mirrored:
                keypoints_2d, crop_pixels = mirror_keypoints(keypoints_2d, crop_pixels)
        else:
            images = self.network.normalise(source)
            if mirrored:
                images, keypoints_2d, crop_pixels = mirror_batch(images, keypoints_2d, crop_pixels)
            features = self.network.features(images)
        return keypoints_2d, crop_pixels, features, mirror_pose_3d(target) if mirrored else target


@torch.no_grad()
def predict_images(network, loader, views: ViewMaker, flip: bool, info: DistInfo = DistInfo()):
    """Predictions [N, J, 3] (numpy, metres) for every image of the loader's table, in table
    order; with several ranks each predicts its share (the loader's sampler) and all are gathered."""
    from models.context_pose import mirror_pose_3d, ref_from_crop_pixels
    head = network.volume_net
    network.eval()
    mine = []
    try:
        # disable=None: no bar when stderr is not a terminal
        for batch in tqdm(loader, desc='evaluate', unit='batch', leave=False, disable=None if info.is_main else True):
            keypoints_2d, crop, features, _ = views(batch)
            pred = head(keypoints_2d, ref_from_crop_pixels(crop), features)
            if flip:
                keypoints_2d, crop, features, _ = views(batch, mirrored=True)
                pred = (pred + mirror_pose_3d(head(keypoints_2d, ref_from_crop_pixels(crop), features))) / 2
            mine.append((batch[-1].numpy(), pred[:, 0].float().cpu().numpy()))
    except UserError as err:
        raise user_error_from_worker(err) from None
    count = len(loader.dataset)
    predictions = np.zeros((count, *mine[0][1].shape[1:]), np.float32) if mine else np.zeros((count, 17, 3))
    for part in gather_objects(mine, info):
        for indices, preds in part:
            predictions[indices] = preds
    return predictions


def table_streams(table):
    """(streams, rows): the label table as streams (one per subject, action, sub-action and
    camera), frames in image order, group = the action name so that sub-actions merge; and the
    table rows of each stream."""
    streams, stream_rows = [], []
    for stream, name in enumerate(table.stream_names):
        rows = np.flatnonzero(table.stream == stream)
        rows = rows[np.argsort(table.image_id[rows], kind='stable')]
        first = rows[0]
        streams.append(Sequence(pose2d=table.keypoints_2d[rows], pose3d=table.pose3d[rows],
                                subject=f'S{int(table.subject[first])}', action=name,
                                camera=int(table.camera[first]), group=table.group(first)))
        stream_rows.append(rows)
    return streams, stream_rows


def score_images(table, predictions, spec, flip: bool) -> dict:
    """The action-wise results dict (mm) of per-image predictions [N, J, 3] (metres)."""
    streams, stream_rows = table_streams(table)
    per_stream = [predictions[rows] for rows in stream_rows]
    results = EVALUATORS['actionwise'](streams, per_stream, spec, False)
    results['flip_test'] = bool(flip)
    results['zero_predicted_root'] = False
    results['images'] = int(len(table))
    return results
