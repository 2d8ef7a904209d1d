"""PoseRetNet family: RetMixSTE (parallel / chunkwise / recurrent forms), MixSTE2, STCModel.

Checks the official fixtures (loaded from the checkpoint object and from a file), the key
tables and parameter counts of the published configurations, the equality of the three
retention forms, chunk-size transfer and official-checkpoint detection."""
import copy
import functools
import glob
import json
import os

import pytest
import torch

from common.train.checkpoint import load_checkpoint, split_checkpoint
from common.compat import model_spec_from_checkpoint
from common.eval.inference import predict_sequence
from common.data.pose_codec import mirror_pose
from conftest import REFERENCE, load_fixture
from models import build_model, detect_official_model

FIXTURES = {'retnet': 'retnet_h36m_f27_cs9.pt', 'mixste': 'mixste2_h36m_f27.pt', 'stc': 'stc_h36m_f27.pt'}
TABLE_MODEL = {'retnet': 'retnet', 'mixste2': 'mixste', 'stc': 'stc'}
PUBLISHED_PARAMETERS = [  # reference README, "Parameter counts of the published configurations"
    ('retnet', dict(num_joints=17, dataset='h36m'), 35_749_443),
    ('retnet', dict(num_joints=17, dataset='mpii3d_univ'), 35_749_443),
    ('retnet', dict(num_joints=14, dataset='mpii3d'), 35_747_715),
    ('mixste', dict(num_frame=243), 33_783_811),
    ('mixste', dict(num_frame=900), 34_120_195),
    ('stc', dict(), 4_748_000),
]




@functools.lru_cache(maxsize=None)
def fixture(name):
    return load_fixture(FIXTURES[name])


def assert_matches(mine, ref, cfg):
    tol = cfg['tolerance']
    torch.testing.assert_close(mine, ref, atol=tol['atol'], rtol=tol['rtol'])


def flip_pairs(cfg):
    return cfg['flip_pairs']['kps_left'], cfg['flip_pairs']['kps_right']


def loaded(name, source, tmp_path, **overrides):
    """Fixture model with its weights, from the checkpoint object or from a torch.save'd file."""
    fx = fixture(name)
    model = build_model(name, **{**fx['config']['constructor'], **overrides})
    checkpoint = fx['checkpoint']
    if source == 'file':
        checkpoint = os.path.join(tmp_path, 'official.bin')
        torch.save(fx['checkpoint'], checkpoint)
    return load_checkpoint(model, checkpoint)


def official_seq2seq(model, pose2d, left, right):
    """PoseRetNet's evaluate_parallel for one sequence [T, J, 2]: windows of F frames, the last
    one the last F frames; earlier windows keep the overlap; flip averaged per window."""
    frames, length = model.receptive_field, pose2d.shape[0]
    starts = list(range(0, length - frames + 1, frames))
    if starts[-1] + frames < length:
        starts.append(length - frames)
    windows = torch.stack([pose2d[s:s + frames] for s in starts])
    out = (model(windows) + mirror_pose(model(mirror_pose(windows, left, right)), left, right)) / 2
    tail = length - (starts[-2] + frames) if len(starts) > 1 else frames
    return torch.cat([out[:-1].flatten(0, 1), out[-1, frames - tail:]]) if len(starts) > 1 else out[0]


# ----------------------------------------------------------------------------- fixtures
@pytest.mark.parametrize('source', ['object', 'file'])
@torch.no_grad()
def test_retnet_fixture(source, tmp_path):
    fx = fixture('retnet')
    cfg = fx['config']
    model = loaded('retnet', source, tmp_path)
    assert_matches(model(fx['input']), fx['output'], cfg)
    assert_matches(model.predict_sequence(fx['input']), fx['output_chunkwise'], cfg)
    assert_matches(model.predict_sequence(fx['input_long']), fx['output_long_chunkwise'], cfg)
    tta = predict_sequence(model, fx['input_long'][:1], flip_pairs=flip_pairs(cfg))
    assert_matches(tta[0], fx['output_eval_tta'], cfg)
    # streaming chunk by chunk (34 chunks of 9, the last one 4 frames) gives the same numbers
    state, outputs = model.init_state(2), []
    for chunk in fx['input_long'].split(model.chunk_size, 1):
        out, state = model.step_chunk(chunk, state)
        outputs.append(out)
    assert_matches(torch.cat(outputs, 1), fx['output_long_chunkwise'], cfg)


@pytest.mark.parametrize('name', ['mixste', 'stc'])
@pytest.mark.parametrize('source', ['object', 'file'])
@torch.no_grad()
def test_baseline_fixture(name, source, tmp_path):
    fx = fixture(name)
    cfg = fx['config']
    model = loaded(name, source, tmp_path)
    assert_matches(model(fx['input']), fx['output'], cfg)
    if name == 'mixste':  # the release's windowing, written out here
        assert_matches(official_seq2seq(model, fx['input_seq'], *flip_pairs(cfg)), fx['output_eval_tta'], cfg)
    else:
        tta = predict_sequence(model, fx['input_seq'][None], flip_pairs=flip_pairs(cfg))
        assert_matches(tta[0], fx['output_eval_tta'], cfg)


@torch.no_grad()
def test_mixste_eval_tta_through_engine(tmp_path):
    fx = fixture('mixste')
    model = loaded('mixste', 'object', tmp_path)
    tta = predict_sequence(model, fx['input_seq'][None], flip_pairs=flip_pairs(fx['config']))
    assert_matches(tta[0], fx['output_eval_tta'], fx['config'])


# ----------------------------------------------------------------------------- published layouts
def key_tables():
    paths = sorted(glob.glob(os.path.join(REFERENCE, 'checkpoint_keys', '*.json')))
    return [p for p in paths if os.path.basename(p).split('_')[0] in TABLE_MODEL]


def table_state_dict(table):
    """State dict with the table's keys and shapes (values only where the table lists them)."""
    state = {}
    for entry in table['tensors']:
        key = entry['key'].removeprefix('module.')
        if 'value' in entry:
            state[key] = torch.tensor(entry['value'], dtype=torch.float32)
        else:
            state[key] = torch.empty(entry['shape'], device='meta')
    return state


@pytest.mark.parametrize('path', key_tables(), ids=os.path.basename)
def test_key_table(path):
    with open(path) as handle:
        table = json.load(handle)
    name = TABLE_MODEL[os.path.basename(path).split('_')[0]]
    constructor = {k: v for k, v in table['constructor'].items() if k != 'drop_path_rate'}
    with torch.device('meta'):
        model = build_model(name, **constructor)
    mine = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert mine == [(t['key'].removeprefix('module.'), t['shape']) for t in table['tensors']]
    assert sum(p.numel() for p in model.parameters()) == table['num_parameters']
    buffers = {k for k, _ in model.named_buffers() if k in model.state_dict()}
    assert buffers == {t['key'].removeprefix('module.') for t in table['tensors'] if t['kind'] == 'buffer'}
    detected_name, config = detect_official_model(table_state_dict(table))
    assert detected_name == name
    for key in ('num_joints', 'depth', 'dataset', 'num_frame', 'gamma_divider', 'joint_related'):
        if key in config:
            assert config[key] == constructor[key], key
    assert config['embed_dim'] == constructor['embed_dim_ratio']


@pytest.mark.parametrize('name,config,count', PUBLISHED_PARAMETERS)
def test_published_parameter_counts(name, config, count):
    with torch.device('meta'):
        model = build_model(name, **config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_detect_fixture_checkpoints():
    for name in FIXTURES:
        fx = fixture(name)
        found, config = detect_official_model(split_checkpoint(fx['checkpoint'])[0])
        assert found == name and model_spec_from_checkpoint(fx['checkpoint']) == (found, config)
        constructor = fx['config']['constructor']
        assert config['embed_dim'] == constructor['embed_dim_ratio'] and config['depth'] == constructor['depth']
        model = build_model(name, **config)
        load_checkpoint(model, fx['checkpoint'])  # the detected configuration loads strictly


# ----------------------------------------------------------------------------- retention forms
@torch.no_grad()
def test_causal_recurrent_equals_parallel(tmp_path):
    fx = fixture('retnet')
    model = loaded('retnet', 'object', tmp_path, causal=True)
    clip = fx['input_long'][:, :150]
    parallel = model(clip)
    state, outputs = model.init_state(2), []
    for t in range(clip.shape[1]):
        pose, state = model.step(clip[:, t], state)
        outputs.append(pose)
    torch.testing.assert_close(torch.stack(outputs, 1), parallel, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.predict_sequence(clip), parallel, atol=1e-5, rtol=0)
    assert all(s.shape == state[0].shape for s in state)               # constant-size state
    # in float64 the recurrence is exact, also without per-joint decay
    for joint_related in (True, False):
        torch.manual_seed(0)
        model = build_model('retnet', num_frame=40, embed_dim=16, depth=2, causal=True,
                            joint_related=joint_related).eval().double()
        clip = torch.randn(1, 40, 17, 2, dtype=torch.float64) * 0.5
        state, outputs = model.init_state(1), []
        for t in range(clip.shape[1]):
            pose, state = model.step(clip[:, t], state)
            outputs.append(pose)
        torch.testing.assert_close(torch.stack(outputs, 1), model(clip), atol=1e-10, rtol=0)


@pytest.mark.parametrize('chunk', [3, 9, 27, 81])
@torch.no_grad()
def test_chunkwise_equals_parallel_chunk_mask(chunk, tmp_path):
    fx = fixture('retnet')
    model = loaded('retnet', 'object', tmp_path, chunk_size=chunk, num_frame=81)
    clip = fx['input_long'][:, :81]
    parallel = model(clip)                                             # block-structured mask
    torch.testing.assert_close(model.predict_sequence(clip), parallel, atol=1e-5, rtol=0)
    state, outputs = model.init_state(2), []
    for part in clip.split(chunk, 1):
        out, state = model.step_chunk(part, state)
        outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, 1), parallel, atol=1e-5, rtol=0)


@torch.no_grad()
def test_chunk_size_transfer(tmp_path):
    """One file serves every chunk size: same weights, other chunk -> other, finite output."""
    fx = fixture('retnet')
    clip = fx['input_long'][:, :243]
    outputs = [loaded('retnet', 'object', tmp_path, chunk_size=c, num_frame=243).predict_sequence(clip)
               for c in (243, 81, 27)]
    for out in outputs:
        assert torch.isfinite(out).all()
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3 and (outputs[1] - outputs[2]).abs().max() > 1e-3


@torch.no_grad()
def test_long_stream_stays_finite():
    """The carried state is kept relative to the next frame: no xPos overflow on long streams."""
    torch.manual_seed(0)
    model = build_model('retnet', num_frame=243, num_joints=2, embed_dim=16, num_heads=2, depth=1,
                        chunk_size=243, joint_related=False).eval()
    state = model.init_state(1)
    chunk = torch.randn(1, 243, 2, 2) * 0.5
    for _ in range(170):                                               # 41,310 frames
        out, state = model.step_chunk(chunk, state)
    assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in state)


def test_step_needs_causal_model():
    model = build_model('retnet', num_frame=27, embed_dim=16, depth=1, chunk_size=9).eval()
    with pytest.raises(ValueError):
        model.step(torch.zeros(1, 17, 2), model.init_state(1))
    with pytest.raises(ValueError):
        model.step_chunk(torch.zeros(1, 10, 17, 2), model.init_state(1))


def test_training_forms_agree_and_backpropagate(tmp_path):
    fx = fixture('retnet')
    parallel = loaded('retnet', 'object', tmp_path, trainable=True).train()
    chunkwise = copy.deepcopy(parallel)
    chunkwise.train_mode = 'chunkwise'
    clip = fx['input']
    out_parallel, out_chunkwise = parallel(clip), chunkwise(clip)
    torch.testing.assert_close(out_chunkwise, out_parallel, atol=1e-5, rtol=0)
    out_parallel.square().mean().backward()
    gamma = parallel.TTEblocks[0].attn.retentions[0].gamma
    assert gamma.grad is not None and torch.isfinite(gamma.grad).all() and gamma.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in parallel.parameters() if p.grad is not None)


def test_factories_take_command_line_names():
    model = build_model('retnet', num_frame=27, num_joints=14, embed_dim=16, depth=1, num_heads=8,
                        mlp_ratio=2, drop_path_rate=0.0, dropout=0.0, chunk_size=9, joint_related=True,
                        causal=True, gamma_divider=8, trainable=False, train_mode='chunkwise', dataset='mpii3d')
    assert model.receptive_field == 27 and model.predicts == 'sequence' and model.causal
    assert build_model('mixste', num_frame=27, embed_dim=16, depth=1).receptive_field == 27
    assert build_model('stc', num_frame=27, embed_dim=16, depth=1).predicts == 'sequence'
    for name in ('retnet', 'mixste', 'stc'):
        with pytest.raises(TypeError):
            build_model(name, not_a_flag=1)
    with pytest.raises(ValueError):
        build_model('retnet', num_joints=17, dataset='mpii3d')       # 14-joint decay table


def test_training_loss_is_the_release_objective():
    torch.manual_seed(0)
    predicted, target = torch.randn(2, 9, 17, 3), torch.randn(2, 9, 17, 3)
    model = build_model('stc', num_frame=9, embed_dim=16, depth=1)
    weights = torch.tensor([1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4])
    position = (weights * (predicted - target).norm(dim=-1)).mean()
    smoothness = (weights[:, None] * (predicted[:, 1:] - predicted[:, :-1]) ** 2).sum(-1).mean()
    velocity = ((predicted[:, 1:] - predicted[:, :-1]) - (target[:, 1:] - target[:, :-1])).norm(dim=-1).mean()
    from models.mixste import poseretnet_loss
    torch.testing.assert_close(poseretnet_loss(predicted, target, model.loss_weights),
                               position + 0.5 * smoothness + 2 * velocity, rtol=1e-5, atol=1e-6)
    for name in ('retnet', 'mixste', 'stc'):
        model = build_model(name, num_frame=9, embed_dim=16, depth=1, dataset='mpii3d_univ')
        loss = model.training_loss(torch.randn(2, 9, 17, 2), target)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize('flags, causal, joint_related', [
    ([], True, False),  # the release's parser: switches absent -> causal, one decay rate
    (['--joint-related', '--uncausal'], False, True),  # the published commands
])
def test_command_line_switches_keep_the_release_meaning(flags, causal, joint_related):
    from common.cli.arguments import build_parser
    from common.data.datasets import H36M_SPEC
    from common.cli.model_setup import build_lifter
    args = build_parser('run.py', '', 'h36m').parse_args(['--model', 'retnet', '-f', '9', '-cs', '16', '-dep', '1',
                                                          *flags])
    model, name, config = build_lifter(args, H36M_SPEC)
    assert name == 'retnet' and config['causal'] is causal and config['joint_related'] is joint_related


@pytest.mark.parametrize('name', ['retnet', 'mixste', 'stc'])
def test_cpu_inference_in_cache_sized_passes_equals_one_pass(name):
    """27 x 17 tokens per sample: a batch of 20 goes in passes of 9, 9 and 2 samples."""
    torch.manual_seed(0)
    model = build_model(name, num_frame=27, embed_dim=32, depth=2, chunk_size=9).eval() if name == 'retnet' \
        else build_model(name, num_frame=27, embed_dim=32, depth=2).eval()
    x = torch.randn(20, 27, 17, 2)
    with torch.enable_grad():
        one_pass = model(x).detach()  # gradients on: a single pass
    with torch.no_grad():
        torch.testing.assert_close(model(x), one_pass, atol=1e-5, rtol=1e-5)
