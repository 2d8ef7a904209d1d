"""Metrics on hand-made cases with known answers, and P-MPJPE against a per-frame numpy reference."""
import math

import numpy as np
import pytest
import torch

from common.eval.metrics import (AUC_THRESHOLDS, PCK_THRESHOLD, ActionwiseMeter, MPII3D_14_FROM_17,
                                 PCK_GROUPS_3DHP_14, action_group, auc, mpii3d_protocol, mpjpe, mpjve,
                                 n_mpjpe, p_mpjpe, per_joint_error, pck, procrustes_align, protocol_table,
                                 stream_metrics)
from common.data.pose_codec import zero_root


def rotation_matrix(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


@pytest.fixture
def poses():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(6, 17, 3, generator=generator, dtype=torch.float64) * 0.3


def test_similar_copy_has_zero_p_mpjpe(poses):
    rotation = torch.from_numpy(rotation_matrix([0.3, -1.0, 0.5], 1.1))
    copy = 1.7 * poses @ rotation + torch.tensor([0.2, -0.4, 3.0], dtype=torch.float64)
    assert mpjpe(copy, poses).item() > 0.1
    assert p_mpjpe(copy, poses).item() < 1e-10
    torch.testing.assert_close(procrustes_align(copy, poses), poses, atol=1e-10, rtol=0)
    assert p_mpjpe(copy.float(), poses.float()).item() < 1e-5
    assert p_mpjpe(copy, poses).dtype == torch.float64


def test_reflected_copy_is_not_aligned(poses):
    mirrored = poses * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert p_mpjpe(mirrored, poses, reduce='frame').min().item() > 1e-2


def test_constant_offset():
    target = torch.rand(2, 10, 17, 3, dtype=torch.float64)
    offset = torch.tensor([0.03, 0.0, 0.04], dtype=torch.float64)  # |d| = 0.05 m
    pred = target + offset
    assert mpjpe(pred, target).item() == pytest.approx(0.05, abs=1e-12)
    assert mpjve(pred, target).item() == pytest.approx(0.0, abs=1e-12)
    assert mpjpe(pred, target, reduce='frame').shape == (2, 10)
    assert mpjpe(pred, target, reduce='none').shape == (2, 10, 17)
    assert mpjve(pred, target, reduce='frame').shape == (2, 9)
    torch.testing.assert_close(per_joint_error(pred, target), torch.full((17,), 0.05, dtype=torch.float64))


def test_scaled_copy_has_zero_n_mpjpe(poses):
    assert n_mpjpe(0.6 * poses, poses).item() < 1e-12
    assert mpjpe(0.6 * poses, poses).item() > 0.1


def test_shape_mismatch_is_refused(poses):
    with pytest.raises(AssertionError):
        mpjpe(poses, poses[:, :16])
    with pytest.raises(ValueError):
        mpjpe(poses, poses, reduce='sum')


def test_two_joint_hand_values():
    target = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    pred = torch.tensor([[[0.0, 0.3, 0.0], [1.0, 0.0, 0.4]]], dtype=torch.float64)
    assert mpjpe(pred, target).item() == pytest.approx(0.35)
    # Scale only: s = <P, G> / |P|^2 = 1 / 1.25 = 0.8; errors |(0, .24, 0)| and |(-.2, 0, .32)|.
    assert n_mpjpe(pred, target).item() == pytest.approx((0.24 + math.sqrt(0.04 + 0.1024)) / 2)
    # Two points: similarity alignment maps them exactly onto the target.
    assert p_mpjpe(pred, target).item() == pytest.approx(0.0, abs=1e-12)
    # Velocity: dP joint 0 = (0, -0.3, 0) vs dG 0; joint 1 = (0, 0, -0.4) vs 0.
    pred_t = torch.cat([pred, target])  # frame 1 exact
    target_t = torch.cat([target, target])
    assert mpjve(pred_t, target_t).item() == pytest.approx(0.35)


def numpy_p_mpjpe_per_frame(pred, target):
    """Straightforward per-frame Procrustes, written from the definition."""
    errors = []
    for p, g in zip(pred, target):
        g0, p0 = g - g.mean(0), p - p.mean(0)
        ng, np_ = np.linalg.norm(g0), np.linalg.norm(p0)
        g0, p0 = g0 / ng, p0 / np_
        u, s, vt = np.linalg.svd(g0.T @ p0)
        v = vt.T
        r = v @ u.T
        if np.linalg.det(r) < 0:
            v[:, -1] *= -1
            s[-1] *= -1
            r = v @ u.T
        a = s.sum() * ng / np_
        t = g.mean(0) - a * p.mean(0) @ r
        errors.append(np.linalg.norm(a * p @ r + t - g, axis=-1).mean())
    return np.array(errors)


def test_p_mpjpe_matches_numpy_reference():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(40, 17, 3))
    pred = target + rng.normal(scale=0.4, size=target.shape)
    pred[::3] *= np.array([-1.0, 1.0, 1.0])  # some frames need the reflection fix
    expected = numpy_p_mpjpe_per_frame(pred, target)
    got = p_mpjpe(torch.from_numpy(pred), torch.from_numpy(target), reduce='frame').numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)
    batched = p_mpjpe(torch.from_numpy(pred).reshape(4, 10, 17, 3), torch.from_numpy(target).reshape(4, 10, 17, 3))
    assert batched.item() == pytest.approx(expected.mean(), abs=1e-12)
    got32 = p_mpjpe(torch.from_numpy(pred).float(), torch.from_numpy(target).float(), reduce='frame')
    np.testing.assert_allclose(got32.numpy(), expected, atol=1e-5)


def test_zero_root():
    pose = torch.ones(2, 5, 3)
    zeroed = zero_root(pose, 0)
    assert zeroed[:, 0].abs().sum() == 0 and zeroed[:, 1:].eq(1).all() and pose.eq(1).all()
    assert zero_root(pose, None) is pose


def test_action_group():
    assert action_group('Walking 1') == 'Walking'
    assert action_group('WalkDog') == 'WalkDog'
    assert action_group('SittingDown 2') == 'SittingDown'


def test_actionwise_average_differs_from_frame_weighted():
    meter = ActionwiseMeter()
    meter.update('Walking 1', 100, mpjpe=0.04, p_mpjpe=0.03, n_mpjpe=0.035, mpjve=0.002)
    meter.update('Walking 2', 300, mpjpe=0.08, p_mpjpe=0.05, n_mpjpe=0.075, mpjve=0.004)
    meter.update('Eating', 100, mpjpe=0.02, p_mpjpe=0.01, n_mpjpe=0.015, mpjve=0.001)
    out = meter.result()
    walking = out['per_action']['Walking']
    assert walking['frames'] == 400
    assert walking['mpjpe'] == pytest.approx(0.07)     # (0.04*100 + 0.08*300) / 400
    assert walking['mpjve'] == pytest.approx(0.0035)   # (0.002*100 + 0.004*300) / 400
    assert out['mpjpe'] == pytest.approx(0.045)        # (0.07 + 0.02) / 2
    assert out['p_mpjpe'] == pytest.approx(0.0275)     # (0.045 + 0.01) / 2
    assert out['frame_weighted']['mpjpe'] == pytest.approx(0.06)  # 30 / 500
    assert out['frame_weighted']['frames'] == 500
    assert set(out['per_action']) == {'Walking', 'Eating'}


def test_velocity_weighted_by_frames_not_differences():
    meter = ActionwiseMeter()
    meter.update('Walking', 2, mpjpe=0, p_mpjpe=0, n_mpjpe=0, mpjve=0.1)
    meter.update('Walking 1', 4, mpjpe=0, p_mpjpe=0, n_mpjpe=0, mpjve=0.4)
    assert meter.result()['mpjve'] == pytest.approx(0.3)  # (0.2 + 1.6) / 6, not 1.3 / 4


def test_meters_merge_like_one():
    a, b, whole = ActionwiseMeter(), ActionwiseMeter(), ActionwiseMeter()
    gen = torch.Generator().manual_seed(1)
    for i, name in enumerate(['Walking 1', 'Eating', 'Walking', 'Phoning 2']):
        target = torch.randn(5 + i, 17, 3, generator=gen, dtype=torch.float64)
        pred = target + 0.1 * torch.randn(target.shape, generator=gen, dtype=torch.float64)
        (a if i % 2 else b).update_stream(name, pred, target)
        whole.update_stream(name, pred, target)
    merged = a.merge(b).result()
    expected = whole.result()
    for key in ('mpjpe', 'p_mpjpe', 'n_mpjpe', 'mpjve'):
        assert merged[key] == pytest.approx(expected[key], abs=1e-15)
    assert merged['per_action'].keys() == expected['per_action'].keys()
    for group, values in expected['per_action'].items():
        assert merged['per_action'][group] == pytest.approx(values, abs=1e-15)


def test_stream_metrics_values():
    target = torch.zeros(3, 2, 3, dtype=torch.float64)
    target[:, 1, 0] = 1.0
    pred = target.clone()
    pred[1, :, 2] += 0.1  # frame 1 shifted by 0.1 m
    out = stream_metrics(pred, target)
    assert out['mpjpe'] == pytest.approx(0.1 / 3)
    assert out['mpjve'] == pytest.approx(0.1)  # both differences are 0.1 on every joint
    assert out['p_mpjpe'] == pytest.approx(0.0, abs=1e-12)


# MPI-INF-3DHP protocol (errors in metres, like the Human3.6M metrics) -------

MM = 1 / 1000


def test_pck_all_below_threshold():
    errors = torch.full((10, 17), 149.9 * MM, dtype=torch.float64)
    errors[:, 14] = 0  # pelvis
    assert pck(errors) == 100.0
    errors[0, 3] = 150.0 * MM  # strict <: exactly 150 mm fails
    assert pck(errors) == pytest.approx(100 * (1 - 1 / 140))


def test_auc_of_evenly_spread_errors():
    # 150 frames with errors 0, 1, ..., 149 mm on every joint: below 5k mm are 5k of them,
    # so PCK(5k) = k / 30 and AUC = mean_{k=0..30} k / 30 = 15.5 / 31 = 50 %.
    errors = (torch.arange(150.0, dtype=torch.float64) / 1000)[:, None].expand(150, 17)
    assert auc(errors) == pytest.approx(50.0)
    # Spread over 0-300 mm: PCK(5k) = k / 60, AUC = 15.5 / 62 = 25 %; PCK = 50 %.
    errors = (torch.arange(300.0, dtype=torch.float64) / 1000)[:, None].expand(300, 17)
    assert auc(errors) == pytest.approx(25.0)
    assert pck(errors) == pytest.approx(50.0)


def test_thresholds_are_the_protocol_millimetres_in_metres():
    assert PCK_THRESHOLD == 0.15 and len(AUC_THRESHOLDS) == 31
    assert AUC_THRESHOLDS[0] == 0 and AUC_THRESHOLDS[-1] == PCK_THRESHOLD
    assert AUC_THRESHOLDS[3] == pytest.approx(0.015)
    # Errors given in millimetres are 1000 times too large: everything fails but exact zeros.
    assert pck(torch.full((2, 17), 20.0)) == 0.0


def test_perfect_auc():
    assert auc(torch.zeros(4, 17)) == pytest.approx(100 * 30 / 31)
    assert round(auc(torch.zeros(4, 17)), 2) == 96.77


def test_3dhp_mpjpe_includes_zero_pelvis():
    errors = torch.full((5, 17), 34.0 * MM, dtype=torch.float64)
    errors[:, 14] = 0.0
    row = protocol_table(errors)
    assert row['mpjpe'] == pytest.approx(0.032)  # 34 mm * 16 / 17, in metres
    assert row['pck'] == 100.0 and row['frames'] == 5


def test_group_tables():
    errors = torch.zeros(4, 17, dtype=torch.float64)
    errors[:, 0] = 200.0 * MM      # head top always wrong
    errors[:2, 4] = 100.0 * MM     # right wrist 100 mm in two frames
    row = protocol_table(errors)
    assert row['pck_groups']['Head'] == 0.0
    assert row['pck_groups']['Wrist'] == 100.0
    assert row['pck'] == pytest.approx(100 * 13 / 14)
    # Wrist curve: 2 joints x 4 frames; 6 of 8 below every threshold > 0, all 8 from 105 mm on.
    expected_wrist = 100 * (sum(6 / 8 for t in range(5, 101, 5)) + 10 * 1.0) / 31
    assert row['auc_groups']['Wrist'] == pytest.approx(expected_wrist)


def test_14_joint_groups():
    assert PCK_GROUPS_3DHP_14['Head'] == (13,) and PCK_GROUPS_3DHP_14['Neck'] == (12,)
    assert PCK_GROUPS_3DHP_14['Ankle'] == (0, 5) and PCK_GROUPS_3DHP_14['Hip'] == (2, 3)
    errors17 = torch.rand(6, 17, dtype=torch.float64) * 0.2
    errors14 = errors17[:, list(MPII3D_14_FROM_17)]
    assert pck(errors14, groups=PCK_GROUPS_3DHP_14) == pytest.approx(pck(errors17))
    assert auc(errors14, groups=PCK_GROUPS_3DHP_14) == pytest.approx(auc(errors17))


def test_protocol_is_frame_weighted_over_sequences():
    errors = torch.cat([torch.full((3, 17), 0.010), torch.full((1, 17), 0.200)])
    sequences = ['TS1', 'TS1', 'TS1', 'TS2']
    out = mpii3d_protocol(errors, sequences, activities=[1, 1, 2, 2])
    assert out['per_sequence']['TS1']['pck'] == 100.0
    assert out['per_sequence']['TS2']['pck'] == 0.0
    assert out['All']['pck'] == pytest.approx(75.0)  # not the plain mean, 50
    assert out['All']['mpjpe'] == pytest.approx((3 * 0.010 + 0.200) / 4)
    assert out['per_activity']['Standing/Walking']['frames'] == 2
    assert out['per_activity']['Exercising']['pck'] == pytest.approx(50.0)

