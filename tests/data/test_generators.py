"""Window datasets and whole-sequence prediction: indices, padding, tds, flips, epochs."""
import numpy as np
import torch

from common.data.datasets import Sequence
from common.data.generators import EpochSampler, WindowConfig, WindowDataset
from common.eval.inference import predict_sequence
from common.data.pose_codec import mirror_pose, split_trajectory
from models.base import Lifter
from models.windows import centre_windows

LEFT, RIGHT = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]


def ramp_sequence(length, offset=0.0):
    """pose2d[t, j] = (t + offset, j), pose3d[t, j] = (t + offset, j, 1): frame ids readable from values."""
    t = np.arange(length, dtype=np.float32)[:, None] + offset
    j = np.arange(17, dtype=np.float32)[None]
    pose2d = np.stack(np.broadcast_arrays(t, j), -1).astype(np.float32)
    pose3d = np.stack(np.broadcast_arrays(t, j, np.ones_like(t * j)), -1).astype(np.float32)
    return Sequence(pose2d, pose3d, 'S1', 'Walking', 0, 'Walking')


def test_seq2seq_windows_cover_stream_and_end_on_last_frame():
    data = WindowDataset([ramp_sequence(10), ramp_sequence(4, 100)],
                         WindowConfig('seq2seq', frames=6, flip=False))
    frames = data.__getitems__(list(range(len(data))))['input2d'][:, :, 0, 0]
    assert frames.tolist() == [[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9],
                               [100, 101, 102, 103, 103, 103]]  # short stream: edge padded right


def test_seq2frame_windows_are_centred_with_edge_padding_and_tds():
    data = WindowDataset([ramp_sequence(9)], WindowConfig('seq2frame', frames=5, tds=2, flip=False))
    assert len(data) == 9
    frames = data.__getitems__([0, 4, 8])['input2d'][:, :, 0, 0]
    assert frames.tolist() == [[0, 0, 0, 2, 4], [0, 2, 4, 6, 8], [4, 6, 8, 8, 8]]


def test_causal_windows_end_at_their_target():
    data = WindowDataset([ramp_sequence(9)], WindowConfig('seq2frame', frames=5, flip=False), causal_shift=2)
    assert data.__getitems__([4])['input2d'][0, :, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_root_relative_targets_and_root_depth_from_the_trajectory():
    """The codec splits a camera-frame stream into root-relative joints and the root's
    trajectory; windows carry the relative target and the trajectory's depth."""
    absolute = ramp_sequence(5).pose3d
    absolute[:, 0, 2] = np.arange(5) + 3.0  # the root moves away from the camera
    relative, trajectory = split_trajectory(absolute, 0)
    assert np.all(relative[:, 0] == 0) and np.array_equal(trajectory, absolute[:, 0])
    np.testing.assert_allclose(relative[:, 5], absolute[:, 5] - absolute[:, 0])
    seq = Sequence(ramp_sequence(5).pose2d, relative, 'S1', 'Walking', 0, 'Walking', trajectory=trajectory)
    batch = WindowDataset([seq], WindowConfig('seq2frame', frames=3, flip=False)).__getitems__([2])
    assert torch.all(batch['target3d'][0, :, 0] == 0)
    assert batch['target3d'][0, 1, 5].tolist() == [0.0, 5.0, 1.0 - 5.0]
    assert batch['root_depth'][0].tolist() == [4.0, 5.0, 6.0]


def test_flip_augmentation_mirrors_half_and_swaps_left_right():
    seq = ramp_sequence(200)
    seq.intrinsics = np.arange(1, 10, dtype=np.float32)
    data = WindowDataset([seq], WindowConfig('seq2frame', frames=1, flip=True, seed=3),
                         flip_pairs=(LEFT, RIGHT))
    batch = data.__getitems__(list(range(200)))
    flipped = torch.from_numpy(data.flipped)
    assert 60 < int(flipped.sum()) < 140
    x = batch['input2d'][:, 0]
    assert torch.all(x[flipped, 4, 0] == -x[flipped, 1, 0].abs()) and torch.all(x[flipped, 4, 1] == 1)  # left <- right
    assert torch.all(x[~flipped, 4, 1] == 4)
    assert torch.all(batch['target3d'][flipped, 0, 11, 1] == 14)
    assert torch.all(batch['intrinsics'][flipped, 2] == -3) and torch.all(batch['intrinsics'][flipped, 7] == -8)
    assert torch.all(batch['intrinsics'][~flipped, 2] == 3)


def test_epoch_randomness_is_a_function_of_seed_and_epoch():
    data = WindowDataset([ramp_sequence(500)], WindowConfig('seq2seq', frames=27, random_shift=True, seed=1), flip_pairs=(LEFT, RIGHT))
    data.set_epoch(2)
    first = (data.shift.copy(), data.flipped.copy())
    data.set_epoch(3)
    assert not np.array_equal(first[0], data.shift)
    data.set_epoch(2)
    assert np.array_equal(first[0], data.shift) and np.array_equal(first[1], data.flipped)


def test_sampler_shards_one_permutation_and_skips_for_resume():
    whole = EpochSampler(10, seed=5)
    whole.set_epoch(1)
    order = list(whole)
    ranks = [EpochSampler(10, seed=5, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(1)
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(order)
    assert list(ranks[0]) == order[0::2]
    whole.set_epoch(1, skip=4)
    assert list(whole) == order[4:] and len(whole) == 6


def test_mirror_pose_is_an_involution():
    pose = torch.randn(3, 17, 3)
    assert torch.equal(mirror_pose(mirror_pose(pose, LEFT, RIGHT), LEFT, RIGHT), pose)


class EchoCentre(Lifter):
    """Predicts the centre frame's 2D (with z = 0): makes window alignment visible."""
    receptive_field, predicts = 5, 'centre'

    def forward(self, x):
        centre = x[:, 2:3]
        return torch.cat([centre, torch.zeros_like(centre[..., :1])], -1)


class EchoSequence(EchoCentre):
    predicts = 'sequence'

    def forward(self, x):
        return torch.cat([x, torch.zeros_like(x[..., :1])], -1)


def test_predict_sequence_centre_and_seq2seq_keep_one_prediction_per_frame():
    x = torch.from_numpy(ramp_sequence(12).pose2d)[None]
    for model in (EchoCentre(), EchoSequence()):
        out = predict_sequence(model, x)
        assert out.shape == (1, 12, 17, 3)
        torch.testing.assert_close(out[..., :2], x)
    short = x[:, :3]  # shorter than the receptive field: padded, not a crash
    torch.testing.assert_close(predict_sequence(EchoSequence(), short)[..., :2], short)
    torch.testing.assert_close(predict_sequence(EchoCentre(), short)[..., :2], short)


def test_flip_averaging_of_an_equivariant_model_is_exact():
    x = torch.randn(1, 12, 17, 2)
    out = predict_sequence(EchoCentre(), x, flip_pairs=(LEFT, RIGHT))
    torch.testing.assert_close(out[..., :2], x)


def test_centre_windows_match_per_frame_indices():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    windows = centre_windows(x, 3, tds=2)[:, :, 0, 0]
    assert windows.tolist() == [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 5], [2, 4, 5], [3, 5, 5]]
