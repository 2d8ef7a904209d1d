"""Procedural human motion for the synthetic datasets: bodies, kinematics, clip assembly.

A body is a set of rest-pose bone vectors over the raw 32-joint Human3.6M layout. A clip is
per-frame joint angles [T, 32, 3] plus a root path on the floor [T, 2] and a heading [T];
the action recipes of common/data/synthetic_actions.py fill them in. `finish` then adds a gait
cycle driven by the root speed, the seated posture and its transitions, and forward
kinematics gives world positions [T, 32, 3] in metres (z up) with the lowest contact point
(sole, or the pelvis and knees on the floor) resting on z = 0.

Body frame: x forward, y to the subject's left, z up. Angles per joint are (flex, abduction,
twist) of the bone(s) hanging off that joint: positive flex swings a hanging bone forward,
positive abduction moves it away from the midline, positive twist turns it outward; left and
right are mirrored, so one number means the same movement on both sides.
"""
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from common.data.skeleton import H36M_RAW_PARENTS

FPS = 50
NUM_RAW_JOINTS = 32

# Rest-pose bone vector of each joint from its parent (standing, arms hanging; about the
# bone lengths of a 1.70 m Human3.6M subject) and the body part that scales it.
_REST = (
    ((0, 0, 0), 'none'), ((0, -0.13, -0.02), 'pelvis'), ((0, 0, -0.44), 'thigh'),
    ((0, 0, -0.45), 'shin'), ((0.13, 0, -0.055), 'foot'), ((0.06, 0, -0.01), 'foot'),
    ((0, 0.13, -0.02), 'pelvis'), ((0, 0, -0.44), 'thigh'), ((0, 0, -0.45), 'shin'),
    ((0.13, 0, -0.055), 'foot'), ((0.06, 0, -0.01), 'foot'),
    ((0, 0, 0), 'none'), ((0.01, 0, 0.23), 'spine'), ((0, 0, 0.26), 'spine'),
    ((0.04, 0, 0.12), 'head'), ((-0.02, 0, 0.12), 'head'),
    ((0, 0, 0.26), 'spine'), ((0, 0.15, -0.02), 'shoulders'), ((0, 0, -0.28), 'upper_arm'),
    ((0, 0, -0.25), 'forearm'), ((0, 0, 0), 'none'), ((0.03, 0, -0.04), 'hand'),
    ((0, 0, -0.08), 'hand'), ((0, 0, -0.09), 'hand'),
    ((0, 0, 0.26), 'spine'), ((0, -0.15, -0.02), 'shoulders'), ((0, 0, -0.28), 'upper_arm'),
    ((0, 0, -0.25), 'forearm'), ((0, 0, 0), 'none'), ((0.03, 0, -0.04), 'hand'),
    ((0, 0, -0.08), 'hand'), ((0, 0, -0.09), 'hand'),
)
_PARTS = ('none', 'pelvis', 'thigh', 'shin', 'foot', 'spine', 'head', 'shoulders',
          'upper_arm', 'forearm', 'hand')
_RIGHT = (1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31)
# Mirror sign of abduction and twist per joint (+1 left and centre, -1 right).
_MIRROR = np.array([-1.0 if j in _RIGHT else 1.0 for j in range(NUM_RAW_JOINTS)])

# Points that can touch the floor, with their height above it when they do (metres, for a
# 1.70 m body): ankles (heel), toe bases, toe ends, the pelvis (seated on the floor), knees.
_CONTACT_JOINTS = (3, 4, 5, 8, 9, 10, 0, 2, 7)
_CONTACT_HEIGHT = np.array([0.075, 0.02, 0.01, 0.075, 0.02, 0.01, 0.10, 0.05, 0.05])

# Joint names per side, and named movements: name -> (joint, angle axis, factor) terms.
_SIDE_JOINTS = {'l': dict(hip=6, knee=7, ankle=8, clavicle=16, shoulder=17, elbow=18, wrist=19),
                'r': dict(hip=1, knee=2, ankle=3, clavicle=24, shoulder=25, elbow=26, wrist=27)}
_MOVES = {
    'hip_flex': (('hip', 0, 1),), 'hip_abd': (('hip', 1, 1),), 'hip_twist': (('hip', 2, 1),),
    'knee': (('knee', 0, -1),), 'ankle': (('ankle', 0, 1),), 'shrug': (('clavicle', 1, 1),),
    'shoulder_flex': (('shoulder', 0, 1),), 'shoulder_abd': (('shoulder', 1, 1),),
    'shoulder_twist': (('shoulder', 2, 1),), 'elbow': (('elbow', 0, 1),),
    'wrist': (('wrist', 0, 1),),
    'pelvis_roll': ((0, 1, 1),), 'pelvis_twist': ((0, 2, 1),),
    'lean': ((11, 0, -0.6), (12, 0, -0.4)), 'side_bend': ((11, 1, 0.5), (12, 1, 0.5)),
    'torso_twist': ((11, 2, 0.5), (12, 2, 0.5)),
    'nod': ((13, 0, -0.5), (14, 0, -0.5)), 'head_turn': ((13, 2, 0.5), (14, 2, 0.5)),
    'head_tilt': ((13, 1, 1),),
}


def pose(**degrees) -> np.ndarray:
    """Joint angles [32, 3] (radians) from named movements in degrees. A name applies to both
    sides unless prefixed 'l_' or 'r_' (e.g. pose(knee=90, r_elbow=120))."""
    angles = np.zeros((NUM_RAW_JOINTS, 3))
    for name, value in degrees.items():
        sides = ('l', 'r')
        if name[:2] in ('l_', 'r_'):
            sides, name = (name[0],), name[2:]
        for joint, axis, factor in _MOVES[name]:
            indices = [_SIDE_JOINTS[s][joint] for s in sides] if isinstance(joint, str) else [joint]
            angles[indices, axis] += factor * np.deg2rad(value)
    return angles


def smoothstep(x):
    """0 below 0, 1 above 1, C1-smooth in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Body:
    """offsets -- [32, 3] rest-pose bone vectors (m); posture -- [32, 3] personal static
    angles (rad); arm_swing -- shoulder swing at walking speed (deg); scale -- overall size."""
    offsets: np.ndarray
    posture: np.ndarray
    arm_swing: float
    scale: float

    @property
    def leg_length(self) -> float:
        return float(-self.offsets[2, 2] - self.offsets[3, 2] + 0.075 * self.scale)


def make_body(rng=None, scale=None) -> Body:
    """A random adult body (height about 1.55-1.85 m, proportions varying by a few percent);
    without rng, the reference ("universal") body of about 1.70 m."""
    if rng is None:
        return Body(np.array([v for v, _ in _REST], float), np.zeros((NUM_RAW_JOINTS, 3)),
                    16.0, 1.0 if scale is None else scale)
    scale = rng.uniform(0.91, 1.08) if scale is None else scale
    factors = np.clip(1 + 0.035 * rng.standard_normal(len(_PARTS)), 0.92, 1.08)
    offsets = np.array([np.array(v) * scale * factors[_PARTS.index(part)] for v, part in _REST])
    posture = np.deg2rad(rng.normal(0, 2.5, (NUM_RAW_JOINTS, 3)))
    return Body(offsets, posture, float(rng.uniform(10, 22)), float(scale))


@dataclass
class Clip:
    """The layers of one motion before the gait and the posture are added (all per frame):
    angles [T, 32, 3] rad; xy [T, 2] root path (m); yaw [T] heading (rad, unwrapped);
    sit [T] 0 standing .. 1 seated on a chair; run [T] 0 walking .. 1 running gait."""
    angles: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    sit: np.ndarray
    run: np.ndarray


def _gait_angles(phase, amplitude, run, arm_swing):
    """Joint angles [T, 32, 3] of a walking/running cycle; phase 0 = right heel strike."""
    angles = np.zeros(phase.shape + (NUM_RAW_JOINTS, 3))
    walk = 1 - run

    def add(name, series):
        angles[:] += (amplitude * series)[:, None, None] * pose(**{name: 1.0})
    for side, phi in (('r', phase), ('l', phase + np.pi)):
        swing = ((1 + np.cos(phi - 1.45 * np.pi)) / 2) ** 3     # peaks in early swing
        loading = ((1 + np.cos(phi - 0.25 * np.pi)) / 2) ** 4   # knee yield after heel strike
        add(side + '_hip_flex', walk * (6 + 18 * np.cos(phi)) + run * (18 + 32 * np.cos(phi)))
        add(side + '_knee', walk * (4 + 55 * swing + 12 * loading) + run * (25 + 85 * swing))
        add(side + '_ankle', 6 * np.sin(phi) - 8 * loading)
        add(side + '_shoulder_flex', -(arm_swing + 15 * run) * np.cos(phi))
        add(side + '_elbow', walk * (10 + 12 * (1 - np.cos(phi)) / 2) + run * 75)
    add('pelvis_twist', 5 * np.cos(phase))
    add('torso_twist', -4 * np.cos(phase))
    add('pelvis_roll', 3 * np.cos(2 * phase))
    add('lean', 2 + 8 * run)
    return angles


def finish(clip: Clip, body: Body, rng) -> 'Motion':
    """Add the gait (driven by the root speed), the seated posture and its transitions."""
    speed = np.linalg.norm(np.gradient(clip.xy, axis=0), axis=-1) * FPS
    full = 1.3 + 1.4 * clip.run                      # m/s at which the gait is fully developed
    stride = body.leg_length * (1.55 * (0.45 + 0.55 * np.clip(speed / 1.3, 0, 1.4)) + 1.3 * clip.run)
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(speed / stride) / FPS
    amplitude = np.clip(speed / full, 0, 1.2) * (1 - clip.sit)
    angles = clip.angles + _gait_angles(phase, amplitude, clip.run, body.arm_swing)
    seated = pose(hip_flex=rng.uniform(82, 95), knee=rng.uniform(80, 100), lean=rng.uniform(0, 8))
    rising = pose(lean=rng.uniform(25, 40), nod=rng.uniform(5, 15), shoulder_flex=rng.uniform(10, 25))
    angles = angles + clip.sit[:, None, None] * seated
    angles = angles + (4 * clip.sit * (1 - clip.sit))[:, None, None] * rising
    # Standing still the feet stay put and the pelvis sways over them; walking, the pelvis
    # follows the path.
    anchor = np.clip(1 - 2.5 * amplitude, 0, 1)
    return Motion(angles + body.posture, clip.xy, clip.yaw, anchor)


@dataclass
class Motion:
    """angles [T, 32, 3] rad; xy [T, 2] m; yaw [T] rad; anchor [T] 1 = feet fixed at xy."""
    angles: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    anchor: np.ndarray


def _axis_rotations(angle, axis):
    """[..., 3, 3] rotations by `angle` [...] about x (0), y (1) or z (2)."""
    c, s = np.cos(angle), np.sin(angle)
    o, i = np.zeros_like(angle), np.ones_like(angle)
    rows = {0: ((i, o, o), (o, c, -s), (o, s, c)),
            1: ((c, o, s), (o, i, o), (-s, o, c)),
            2: ((c, -s, o), (s, c, o), (o, o, i))}[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def local_rotations(angles):
    """[T, 32, 3] (flex, abduction, twist) -> [T, 32, 3, 3]. Twist acts about the bone's rest
    axis first, then flex about the lateral axis, then abduction about the forward axis."""
    flex = _axis_rotations(-angles[..., 0], 1)
    abduction = _axis_rotations(_MIRROR * angles[..., 1], 0)
    twist = _axis_rotations(_MIRROR * angles[..., 2], 2)
    return abduction @ flex @ twist


def forward_kinematics(motion: Motion, body: Body) -> np.ndarray:
    """World positions [T, 32, 3] (metres, z up) of a motion performed by a body."""
    rotations = local_rotations(motion.angles)
    n = len(motion.yaw)
    positions = np.zeros((n, NUM_RAW_JOINTS, 3))
    world_rotations = [None] * NUM_RAW_JOINTS
    world_rotations[0] = _axis_rotations(motion.yaw, 2) @ rotations[:, 0]
    for joint, parent in enumerate(H36M_RAW_PARENTS[1:], start=1):
        positions[:, joint] = positions[:, parent] + world_rotations[parent] @ body.offsets[joint]
        world_rotations[joint] = world_rotations[parent] @ rotations[:, joint]
    feet = positions[:, [3, 8], :2].mean(axis=1)
    positions[..., :2] += (motion.xy - motion.anchor[:, None] * feet)[:, None]
    ground = positions[:, _CONTACT_JOINTS, 2] - _CONTACT_HEIGHT * body.scale
    # The lowest contact point changes hands during a step; smoothing the resulting kink
    # keeps accelerations human (the floor is penetrated by a few millimetres at most).
    positions[..., 2] -= gaussian_filter1d(ground.min(axis=1), 2.0, mode='nearest')[:, None]
    return positions
