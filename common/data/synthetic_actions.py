"""Action recipes of the synthetic motion model: one function per action group.

A recipe fills a `ClipBuilder` with a root path (a walk around an ellipse, or standing with
occasional relocation steps), a seated envelope, and gestures: smooth pulses or holds toward
target poses (`pose` of common/data/synthetic_motion.py) plus smooth random jitter. The 15
Human3.6M groups are here, and three more for the MPI-INF-3DHP activities (Exercising,
Floor, Running).
"""
import numpy as np

from common.data.synthetic_motion import FPS, NUM_RAW_JOINTS, Clip, finish, forward_kinematics, pose, smoothstep

# Smooth per-joint jitter of every clip (degrees, for flex / abduction / twist).
_JITTER = np.zeros((NUM_RAW_JOINTS, 3))
_JITTER[[1, 6, 2, 7, 3, 8]] = 1.5
_JITTER[[0, 11, 12]] = 1.5
_JITTER[[13, 14]] = 4.0
_JITTER[[17, 25, 18, 26]] = 4.0
_JITTER[[19, 27]] = 6.0


class ClipBuilder:
    """Accumulates the layers of one clip of `n` frames (see synthetic_motion.Clip)."""

    def __init__(self, n, rng, area=1.0):
        self.n, self.rng, self.area = n, rng, area
        self.t = np.arange(n) / FPS
        self.angles = np.zeros((n, NUM_RAW_JOINTS, 3))
        self.sit = np.zeros(n)
        self.run = np.zeros(n)
        self.xy = self.yaw = None

    # -- random helpers
    def u(self, low, high):
        return float(self.rng.uniform(low, high))

    def side(self):
        return 'l' if self.rng.random() < 0.5 else 'r'

    def sides(self):
        """(a random side, the other one)"""
        arm = self.side()
        return arm, 'r' if arm == 'l' else 'l'

    def seated_or_wandering(self, p_seated, moves, radius):
        """Seated with probability ``p_seated``, else a stroll of randint(*moves) moves."""
        if self.rng.random() < p_seated:
            self.seated()
        else:
            self.wander(self.rng.integers(*moves), radius=radius)

    def smooth_noise(self, size, f_low, f_high, terms=3):
        """[T, size] sums of sinusoids with random frequencies (Hz) and phases, unit RMS."""
        freq = self.rng.uniform(f_low, f_high, (terms, size))
        phase = self.rng.uniform(0, 2 * np.pi, (terms, size))
        waves = np.sin(2 * np.pi * freq * self.t[:, None, None] + phase)
        return waves.sum(axis=1) / np.sqrt(terms / 2)

    # -- envelopes and layers
    def add(self, angles, envelope=None):
        self.angles += angles if envelope is None else envelope[:, None, None] * angles

    def plateau(self, start, length, rise=0.35):
        return smoothstep((self.t - start) / rise) * smoothstep((start + length - self.t) / rise)

    def events(self, gap, length, rise=0.35):
        """Envelopes [T] of successive gestures separated by random gaps (seconds)."""
        out, start = [], self.u(0, gap[1])
        while start < self.t[-1] - 0.5:
            duration = self.u(*length)
            out.append(self.plateau(start, duration, rise))
            start += duration + self.u(*gap)
        return out

    def holds(self, poses, transition=(0.9, 1.5)):
        """Hold each pose in turn, moving smoothly between them."""
        self.add(poses[0])
        edges = np.sort(self.rng.uniform(0.3, 1.0, len(poses) - 1)) * self.t[-1] * 0.85
        for previous, current, start in zip(poses, poses[1:], edges):
            self.add(current - previous, smoothstep((self.t - start) / self.u(*transition)))

    def jitter(self, amplitude, f_low, f_high):
        """Smooth random movement of the joints with angle amplitude [32, 3] (rad)."""
        noise = self.smooth_noise(amplitude.size, f_low, f_high).reshape(self.angles.shape)
        self.add(noise * amplitude)

    def oscillate(self, angles, freq, envelope):
        self.add(angles, envelope * np.sin(2 * np.pi * freq * self.t))

    # -- root paths
    def ellipse(self, speed):
        """Walk around an ellipse near the capture centre at `speed` [T] m/s, facing forward."""
        a, b = self.u(1.1, 1.6) * self.area, self.u(0.7, 1.1) * self.area
        centre = self.rng.uniform(-0.3, 0.3, 2) * self.area
        tilt, direction = self.u(0, np.pi), self.rng.choice([-1.0, 1.0])
        grid = np.linspace(0, 2 * np.pi, 721)
        arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(a * np.cos(grid)),
                                                      np.diff(b * np.sin(grid))))])
        travelled = (self.u(0, arc[-1]) + np.cumsum(speed) / FPS) % arc[-1]
        theta = direction * np.interp(travelled, arc, grid)
        rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
        self.xy = centre + np.stack([a * np.cos(theta), b * np.sin(theta)], -1) @ rotation.T
        tangent = direction * np.stack([-a * np.sin(theta), b * np.cos(theta)], -1) @ rotation.T
        self.yaw = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))

    def cruise(self, v0, variation=0.08):
        return v0 * (1 + variation * self.smooth_noise(1, 0.05, 0.3)[:, 0])

    def stop_and_go(self, v0):
        return v0 * smoothstep(0.55 + 0.7 * self.smooth_noise(1, 0.1, 0.35)[:, 0] / 1.4)

    def wander(self, moves=0, radius=1.2, step_speed=0.6, turn=60):
        """Stand, sway, and take `moves` relocation walks (facing where it goes)."""
        angle, dist = self.u(0, 2 * np.pi), np.sqrt(self.u(0, 1)) * 0.6 * radius * self.area
        position = np.array([np.cos(angle), np.sin(angle)]) * dist
        facing = self.u(-np.pi, np.pi)
        self.xy = position + 0.015 * self.smooth_noise(2, 0.1, 0.4)
        self.yaw = facing + np.deg2rad(8) * self.smooth_noise(1, 0.05, 0.3)[:, 0]
        starts = np.sort(self.rng.uniform(0.3, max(0.4, self.t[-1] - 1.5), moves))
        for start in starts:
            angle, dist = self.u(0, 2 * np.pi), np.sqrt(self.u(0, 1)) * radius * self.area
            step = np.array([np.cos(angle), np.sin(angle)]) * dist - position
            length = float(np.linalg.norm(step))
            duration = max(length / step_speed, 0.8)
            progress = smoothstep((self.t - start) / duration)
            self.xy = self.xy + progress[:, None] * step
            heading = np.arctan2(step[1], step[0])
            towards = (heading - facing + np.pi) % (2 * np.pi) - np.pi
            new_facing = np.deg2rad(self.u(-turn, turn))
            self.yaw = self.yaw + min(length / 0.6, 1) * 0.8 * towards * self.plateau(
                start - 0.2, duration + 0.4, 0.4) + progress * new_facing
            position, facing = position + step, facing + new_facing

    def seated(self):
        self.wander(0)
        self.sit[:] = 1.0

    def build(self, jitter_gain=1.0) -> Clip:
        if self.xy is None:
            self.wander(0)
        self.jitter(np.deg2rad(_JITTER) * jitter_gain, 0.15, 0.7)
        return Clip(self.angles, self.xy, self.yaw, self.sit, self.run)


def _walking(m):
    m.ellipse(m.cruise(m.u(1.15, 1.45)))


def _walk_together(m):
    m.ellipse(m.cruise(m.u(0.85, 1.15)))
    towards = m.rng.choice([-1, 1])
    m.add(pose(head_turn=towards * m.u(15, 30), torso_twist=towards * m.u(3, 8),
               shoulder_flex=-m.u(0, 5)))


def _walk_dog(m):
    m.ellipse(m.stop_and_go(m.u(0.8, 1.2)))
    arm = m.side()
    m.add(pose(**{arm + '_shoulder_flex': m.u(25, 45), arm + '_elbow': m.u(20, 45)},
               nod=m.u(10, 25)))
    m.jitter(pose(**{arm + '_shoulder_flex': 8, arm + '_elbow': 10}, head_turn=10), 0.8, 2.0)


def _directions(m):
    m.wander(m.rng.integers(1, 3), radius=1.3)
    m.add(pose(elbow=m.u(10, 25)))
    for envelope in m.events(gap=(0.5, 1.5), length=(1.2, 2.5)):
        arm = m.side()
        sign = 1 if arm == 'l' else -1
        m.add(pose(**{arm + '_shoulder_flex': m.u(55, 95), arm + '_shoulder_abd': m.u(0, 35),
                      arm + '_elbow': -m.u(0, 10)},
                   torso_twist=sign * m.u(5, 15), head_turn=sign * m.u(10, 30)), envelope)


def _discussion(m):
    m.wander(m.rng.integers(0, 2), radius=1.0)
    m.add(pose(shoulder_flex=m.u(10, 25), elbow=m.u(45, 75), shoulder_twist=-m.u(10, 25)))
    m.jitter(pose(shoulder_flex=15, shoulder_abd=10, elbow=25, shoulder_twist=15, wrist=15), 0.4, 1.5)
    m.jitter(pose(head_turn=20, nod=8, torso_twist=8), 0.2, 0.6)
    m.jitter(pose(pelvis_roll=3, hip_abd=3), 0.1, 0.3)


def _eating(m):
    m.seated()
    m.add(pose(shoulder_flex=m.u(20, 35), elbow=m.u(65, 85), shoulder_twist=-m.u(10, 25),
               lean=m.u(5, 15), nod=m.u(5, 15)))
    for envelope in m.events(gap=(1.0, 2.5), length=(1.0, 1.8)):
        arms = ('l', 'r') if m.rng.random() < 0.3 else (m.side(),)
        for arm in arms:
            m.add(pose(**{arm + '_shoulder_flex': m.u(10, 20), arm + '_shoulder_abd': m.u(10, 20),
                          arm + '_elbow': m.u(50, 65), arm + '_shoulder_twist': -m.u(10, 25)},
                       nod=-5), envelope)
    m.jitter(pose(elbow=10, shoulder_flex=6), 0.3, 1.0)


def _greeting(m):
    m.wander(m.rng.integers(1, 3), radius=1.4, step_speed=0.8)
    for envelope in m.events(gap=(0.8, 2.0), length=(1.5, 3.0)):
        kind, arm = m.rng.integers(3), m.side()
        if kind == 0:   # wave
            m.add(pose(**{arm + '_shoulder_abd': m.u(90, 130), arm + '_shoulder_flex': m.u(10, 30),
                          arm + '_elbow': m.u(50, 80)}), envelope)
            m.oscillate(pose(**{arm + '_shoulder_twist': 20, arm + '_elbow': 10}), m.u(1.5, 2.5), envelope)
        elif kind == 1:  # handshake
            m.add(pose(r_shoulder_flex=m.u(35, 50), r_elbow=m.u(35, 55)), envelope)
            m.oscillate(pose(r_shoulder_flex=6), m.u(2.0, 3.0), envelope)
        else:           # bow
            m.add(pose(lean=m.u(20, 35), nod=m.u(10, 20)), envelope)


def _phoning(m):
    m.seated_or_wandering(0.35, (1, 3), radius=1.2)
    arm, other = m.sides()
    holding = np.ones(m.n)
    if m.t[-1] > 4:
        holding -= m.plateau(m.u(1, m.t[-1] - 2.5), m.u(0.8, 1.5), rise=0.5)
    m.add(pose(**{arm + '_shoulder_flex': m.u(20, 35), arm + '_shoulder_abd': m.u(25, 40),
                  arm + '_elbow': m.u(135, 150), arm + '_shoulder_twist': -m.u(20, 35)},
               head_tilt=(1 if arm == 'r' else -1) * m.u(4, 10)), holding)
    m.add(pose(**{other + '_elbow': m.u(20, 90), other + '_shoulder_twist': -m.u(0, 40)}))
    m.jitter(pose(**{other + '_shoulder_flex': 10, other + '_elbow': 20}, head_turn=15), 0.3, 1.0)


def _photo(m):
    m.wander(m.rng.integers(1, 3), radius=1.2)
    m.add(pose(elbow=m.u(60, 85), shoulder_flex=m.u(10, 25), shoulder_twist=-m.u(20, 35)))
    for envelope in m.events(gap=(0.6, 1.5), length=(1.2, 2.8)):
        m.add(pose(shoulder_flex=m.u(30, 45), shoulder_abd=m.u(15, 30), elbow=m.u(45, 60),
                   shoulder_twist=-m.u(5, 15)), envelope)
        if m.rng.random() < 0.4:   # crouch for a low shot
            m.add(pose(hip_flex=m.u(30, 60), knee=m.u(40, 80), lean=m.u(10, 25)), envelope)
    m.jitter(pose(torso_twist=10, head_turn=10), 0.2, 0.5)


def _random_arm(m, arm):
    kind = m.rng.integers(5)
    ranges = [dict(shoulder_flex=(-15, 30), shoulder_abd=(0, 30), elbow=(0, 40)),      # down
              dict(shoulder_flex=(60, 110), shoulder_abd=(0, 20), elbow=(0, 60)),      # forward
              dict(shoulder_flex=(0, 20), shoulder_abd=(70, 110), elbow=(0, 90)),      # side
              dict(shoulder_flex=(140, 170), shoulder_abd=(0, 20), elbow=(0, 30)),     # up
              dict(shoulder_abd=(35, 50), elbow=(85, 110), shoulder_twist=(-65, -45))][kind]  # hip
    return pose(**{arm + '_' + name: m.u(*span) for name, span in ranges.items()})


def _posing(m):
    m.wander(m.rng.integers(0, 2), radius=1.0)
    poses = []
    for _ in range(m.rng.integers(2, 5)):
        leg = m.side()
        poses.append(_random_arm(m, 'l') + _random_arm(m, 'r') + pose(
            lean=m.u(-10, 20), side_bend=m.u(-10, 10), head_turn=m.u(-30, 30), nod=m.u(-10, 15),
            **{leg + '_hip_abd': m.u(0, 25), leg + '_hip_flex': m.u(-5, 40), leg + '_knee': m.u(0, 40)}))
    m.holds(poses)


def _purchases(m):
    bends = m.events(gap=(1.5, 3.0), length=(1.2, 2.0), rise=0.5)
    bending = np.max(bends, axis=0) if bends else np.zeros(m.n)
    m.ellipse(m.stop_and_go(m.u(0.5, 0.8)) * (1 - bending))
    arm = m.side()
    m.add(pose(**{arm + '_elbow': m.u(60, 90), arm + '_shoulder_flex': m.u(5, 20)}))
    for envelope in bends:
        m.add(pose(lean=m.u(35, 60), hip_flex=m.u(20, 45), knee=m.u(20, 50), nod=m.u(10, 20),
                   shoulder_flex=m.u(40, 70)), envelope)


def _sitting(m):
    m.seated()
    m.add(pose(shoulder_flex=m.u(15, 30), elbow=m.u(50, 80), shoulder_twist=-m.u(10, 30),
               lean=m.u(-5, 15)))
    if m.rng.random() < 0.5:   # crossed legs
        leg = m.side()
        m.add(pose(**{leg + '_hip_flex': m.u(15, 25), leg + '_hip_abd': -m.u(10, 20)}))
    for envelope in m.events(gap=(1.0, 3.0), length=(1.0, 2.5)):
        arm = m.side()
        m.add(pose(lean=m.u(-10, 20), **{arm + '_elbow': m.u(-30, 30),
                                         arm + '_shoulder_flex': m.u(-10, 30)}), envelope)
    m.jitter(pose(head_turn=15, nod=8, elbow=10), 0.2, 0.6)


def _sitting_down(m):
    m.wander(0)
    down, duration = m.u(0.4, 1.5), m.u(1.2, 1.8)
    m.sit = smoothstep((m.t - down) / duration)
    up = down + duration + m.u(1.5, 3.0)
    if up + duration < m.t[-1]:
        m.sit = m.sit - smoothstep((m.t - up) / duration)
    m.add(pose(lean=m.u(20, 35), shoulder_flex=m.u(30, 50), elbow=m.u(60, 90)),
          m.sit * m.plateau(down + duration, m.u(1.0, 2.5), 0.5))


def _smoking(m):
    m.seated_or_wandering(0.3, (0, 2), radius=1.0)
    arm, other = m.sides()
    m.add(pose(**{arm + '_elbow': m.u(40, 70), arm + '_shoulder_twist': -m.u(10, 20),
                  other + '_elbow': m.u(70, 100), other + '_shoulder_twist': -m.u(40, 60),
                  other + '_shoulder_flex': m.u(5, 15)}))
    for envelope in m.events(gap=(1.5, 3.5), length=(1.0, 1.6)):
        m.add(pose(**{arm + '_shoulder_flex': m.u(25, 40), arm + '_shoulder_abd': m.u(15, 25),
                      arm + '_elbow': m.u(70, 90), arm + '_shoulder_twist': -m.u(10, 20)},
                   nod=-m.u(3, 8)), envelope)
    m.jitter(pose(head_turn=15, nod=5), 0.2, 0.6)


def _waiting(m):
    m.wander(m.rng.integers(0, 2), radius=1.0)
    choices = [lambda: pose(shoulder_flex=m.u(15, 25), shoulder_abd=m.u(5, 15),        # crossed
                            elbow=m.u(95, 115), shoulder_twist=-m.u(55, 75)),
               lambda: pose(shoulder_abd=m.u(35, 50), elbow=m.u(85, 105),             # on hips
                            shoulder_twist=-m.u(45, 65)),
               lambda: pose(shoulder_flex=-m.u(15, 25), elbow=m.u(25, 45),            # behind
                            shoulder_twist=-m.u(30, 50)),
               lambda: pose(elbow=m.u(5, 20))]                                        # hanging
    m.holds([choices[k]() for k in m.rng.integers(0, 4, m.rng.integers(2, 4))])
    m.jitter(pose(head_turn=30, nod=8), 0.1, 0.4)
    m.jitter(pose(pelvis_roll=4, hip_abd=4, side_bend=3), 0.08, 0.25)


def _exercising(m):
    m.wander(0)
    cycle = (1 - np.cos(2 * np.pi * m.u(0.4, 0.7) * m.t)) / 2
    kind = m.rng.integers(3)
    if kind == 0:     # squats
        m.add(pose(hip_flex=m.u(70, 90), knee=m.u(90, 110), lean=m.u(25, 35),
                   shoulder_flex=m.u(70, 90)), cycle)
    elif kind == 1:   # jumping-jack arms and legs
        m.add(pose(shoulder_abd=m.u(120, 150), hip_abd=m.u(12, 20)), cycle)
    else:             # arm raises with a side bend
        m.add(pose(shoulder_flex=m.u(140, 165)), cycle)
        m.add(pose(side_bend=m.u(10, 20)), np.sin(np.pi * m.u(0.2, 0.35) * m.t))


def _floor(m):
    m.wander(0)
    knees_up = m.rng.random() < 0.5
    m.add(pose(hip_flex=m.u(125, 140) if knees_up else m.u(80, 95),
               knee=m.u(85, 105) if knees_up else m.u(0, 15),
               lean=m.u(-10, 20), shoulder_flex=-m.u(0, 25), elbow=m.u(5, 20)))
    for envelope in m.events(gap=(1.0, 2.5), length=(1.0, 2.0)):
        arm = m.side()
        m.add(pose(lean=m.u(10, 30), **{arm + '_shoulder_flex': m.u(50, 90)}), envelope)


def _running(m):
    m.ellipse(m.cruise(m.u(2.2, 2.8)))
    m.run[:] = 1.0


RECIPES = {
    'Directions': _directions, 'Discussion': _discussion, 'Eating': _eating,
    'Greeting': _greeting, 'Phoning': _phoning, 'Photo': _photo, 'Posing': _posing,
    'Purchases': _purchases, 'Sitting': _sitting, 'SittingDown': _sitting_down,
    'Smoking': _smoking, 'Waiting': _waiting, 'WalkDog': _walk_dog, 'Walking': _walking,
    'WalkTogether': _walk_together,
    'Exercising': _exercising, 'Floor': _floor, 'Running': _running,
}


def build_clip(group, n, rng, area=1.0) -> Clip:
    """The clip of one action group (a key of RECIPES), n frames at 50 fps."""
    builder = ClipBuilder(n, rng, area)
    RECIPES[group](builder)
    return builder.build()


def perform(group, frames, body, rng):
    """World positions [T, 32, 3] (metres, z up) of one action performed by a body."""
    return forward_kinematics(finish(build_clip(group, frames, rng), body, rng), body).astype(np.float32)
