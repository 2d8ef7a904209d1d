"""The published training commands, at small size on the synthetic dataset: they run, the
loss falls, and stage I weights really reach stage II."""
import pytest
import torch

from common.train.checkpoint import read_checkpoint
from helpers_data import run_inprocess


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from common.data.synthetic import ensure_synthetic
    root = tmp_path_factory.mktemp('data')
    ensure_synthetic(str(root / 'synthetic'), 'h36m')
    return root




def train(data_root, ckpt, *flags, epochs=3, steps=30):
    code, out, err = run_inprocess(['-d', 'synthetic', '--root_path', data_root, '-c', ckpt, '--nolog',
                                    '-e', epochs, '--max-steps-per-epoch', steps, '-a', 'Walking,Eating', *flags])
    assert code == 0, err
    return read_checkpoint(str(ckpt / 'latest.pt'))


def test_poseretnet_training_command(data_root, tmp_path):
    """`-k cpn_ft_h36m_dbb --model retnet --joint-related --uncausal --chunk-size 243 -f 900 -s 450
    --random-shift -b 2` at small size (27 frames, chunk 9, width 32, depth 2)."""
    state = train(data_root, tmp_path, '-k', 'cpn_ft_h36m_dbb', '--model', 'retnet', '--joint-related',
                  '--uncausal', '--chunk-size', 9, '-f', 27, '-s', 13, '--random-shift', '-b', 8,
                  '-cs', 32, '-dep', 2, '-lr', 1e-3)
    losses = [h['train_loss'] for h in state['history']]
    assert state['model_name'] == 'retnet' and state['model_config']['causal'] is False
    assert losses[-1] < 0.8 * losses[0], losses


def test_pstmo_two_stage_pipeline(data_root, tmp_path):
    """Stage I (--MAE) then stage II (--MAE_reload 1 --previous_dir stage I file)."""
    small = ['-f', 27, '--layers', 2, '--channel', 32, '--d_hid', 64, '-b', 64]
    stage1 = train(data_root, tmp_path / 'stage1', *small, '--MAE', '--train', 1, '-tmr', 0.8, '-smn', 2,
                   '--lr', 1e-3, '-lrd', 0.97)
    assert stage1['model_name'] == 'stmo' and stage1['model_config']['pretrain'] is True
    rec = [h['train_loss'] for h in stage1['history']]
    assert rec[-1] < rec[0], rec

    stage2 = train(data_root, tmp_path / 'stage2', *small, '--train', 1, '--lr', 1e-3, '-lrd', 0.97,
                   '--MAE_reload', 1, '--previous_dir', tmp_path / 'stage1' / 'latest.pt', epochs=1, steps=1)
    mpjpe = [h['test'] for h in train(data_root, tmp_path / 'stage2b', *small, '--train', 1, '--lr', 1e-3,
                                       '--MAE_reload', 1, '--previous_dir', tmp_path / 'stage1' / 'latest.pt',
                                       epochs=3)['history']]
    assert mpjpe[-1] < mpjpe[0], mpjpe
    # the encoder of stage II started from stage I: after one tiny step it is still close to it,
    # and far closer than a freshly initialised one would be
    encoder = [k for k in stage1['model'] if k.startswith('encoder.') and k.endswith('weight')]
    assert encoder
    for key in encoder:
        a, b = stage1['model'][key], stage2['model'][key]
        assert (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3, key


def test_refine_stage_trains_lifter_and_refiner_together(data_root, tmp_path):
    """`--refine --reload 1 --train 1 --previous_dir <main model>`: the loaded lifter and a fresh
    refine module train together; `--lr_refine` sets the refiner's rate only; the saved file
    evaluates with its own refiner, and its refiner also serves as --previous_refine_name."""
    small = ['-f', 27, '--layers', 2, '--channel', 32, '--d_hid', 64, '-b', 64, '--lr', 1e-3]
    main = train(data_root, tmp_path / 'main', *small, '--train', 1, epochs=1, steps=5)
    refined = train(data_root, tmp_path / 'refined', *small, '--train', 1, '--refine', '--lr_refine', 1e-2,
                    '--reload', 1, '--previous_dir', tmp_path / 'main' / 'latest.pt', epochs=2, steps=15)
    assert refined['model_name'] == 'refined' and refined['model_config']['lifter'] == 'stmo'
    losses = [h['train_loss'] for h in refined['history']]
    assert losses[-1] < losses[0], losses
    lrs = sorted(group['lr'] for group in refined['optimizer']['param_groups'])
    assert lrs == pytest.approx([1e-3 * 0.95, 1e-2 * 0.95])
    # the lifter started from the main-stage file (a few small steps away from it)
    key = 'encoder.fc_1.weight'
    start, end = main['model'][key], refined['model']['lifter.' + key]
    assert (start - end).abs().max() < 0.2 * start.abs().max()

    def evaluate(*flags):
        code, out, err = run_inprocess(['-d', 'synthetic', '--root_path', data_root, '-a', 'Walking', '--nolog',
                                        '-c', tmp_path / 'refined', *flags])
        assert code == 0, err
        return float(out.split('(MPJPE) action-wise average:')[1].split()[0])
    own = evaluate('--evaluate', 'latest.pt')
    plain_lifter = evaluate('--reload', 1, '--previous_dir', tmp_path / 'main' / 'latest.pt')
    with_file = evaluate('--reload', 1, '--previous_dir', tmp_path / 'main' / 'latest.pt', '--refine',
                         '--refine_reload', 1, '--previous_refine_name', tmp_path / 'refined' / 'latest.pt')
    assert own != plain_lifter != with_file
    # the refiner read back from the pair's file is the pair's own
    assert evaluate('--evaluate', 'latest.pt', '--refine', '--refine_reload', 1, '--previous_refine_name',
                    tmp_path / 'refined' / 'latest.pt') == own


def test_3d_only_pretraining_through_virtual_cameras(data_root, tmp_path):
    """Uplift-and-Upsample's AMASS stage: 2D made from the 3D file by random virtual cameras."""
    from models import build_model
    from common.data.datasets import DataConfig, load_dataset
    from common.train.engine import TrainingObjective
    from common.data.generators import WindowConfig, WindowDataset
    train_seqs, _, spec = load_dataset(DataConfig(dataset='synthetic', root_path=str(data_root), virtual_cameras=2,
                                                  actions=['Walking']))
    assert {s.camera for s in train_seqs} == {0, 1}
    torch.manual_seed(0)
    model = build_model('uplift_upsample', num_frame=9, sequence_stride=2, mask_stride=[4], strides=[3, 3],
                        paddings=[[0, 0], [0, 0]], spatial_dim=8, temporal_dim=32, num_heads=2,
                        spatial_depth=1, temporal_depth=1)
    data = WindowDataset(train_seqs, WindowConfig('seq2frame', frames=model.receptive_field),
                         spec.flip_pairs)
    objective = TrainingObjective(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    losses = []
    for step in range(60):
        batch = data.__getitems__(order[(step * 32 + torch.arange(32)) % len(data)].tolist())
        loss = objective(batch['input2d'], batch['target3d'])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10]), losses
