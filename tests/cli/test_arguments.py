"""The command line: defaults read from the config dataclasses, range checks at parse time
(one line on stderr, exit status 2), negative numbers in any notation, no abbreviations,
--help without '(default: None)', and -e 0 = evaluation of the model as built or loaded."""
import json
import re

import pytest

from common.cli.arguments import build_parser
from common.data.datasets import DataConfig
from common.dist import DEFAULT_TIMEOUT_S
from common.train.engine import TrainConfig
from common.eval.evaluation import EvalConfig
from common.data.generators import WindowConfig
from helpers_data import run_inprocess, single_thread, tiny_args, write_tiny_h36m  # noqa: F401

SCRIPTS = [('run.py', 'h36m', False), ('run_3dhp.py', '3dhp', False), ('render.py', 'h36m', True)]


def parse(argv, script='run.py', viz=False):
    return build_parser(script, '', '3dhp' if script == 'run_3dhp.py' else 'h36m', viz=viz).parse_args(
        [str(a) for a in argv])


def parse_error(argv, capsys, script='run.py', viz=False):
    """The one stderr line of a refused command line (exit status 2)."""
    with pytest.raises(SystemExit) as exit_:
        parse(argv, script, viz)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert exit_.value.code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith('error: '), captured.err
    assert 'Traceback' not in captured.err and 'usage:' not in captured.err
    return lines[0]


def help_text(script='run.py', viz=False):
    return build_parser(script, 'Some description.', 'h36m', viz=viz).format_help()


# ----------------------------------------------------------------------------- defaults

def test_train_config_holds_the_effective_defaults():
    """The values every command ran with before they moved into TrainConfig (the runner's)."""
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_decay, cfg.weight_decay) == (60, 1024, 1e-3, 0.95, 0.0)


@pytest.mark.parametrize('script, dataset, viz', SCRIPTS)
def test_parser_defaults_are_the_config_defaults(script, dataset, viz):
    args = parse([], script, viz)
    train, data = TrainConfig(), DataConfig()
    assert (args.epochs, args.batch_size, args.lr, args.lr_decay, args.weight_decay) == \
        (train.epochs, train.batch_size, train.lr, train.lr_decay, train.weight_decay)
    assert (args.warmup, args.accumulate, args.workers, args.seed, args.checkpoint) == \
        (train.warmup_epochs, train.accumulate, train.workers, train.seed, train.checkpoint_dir)
    assert (args.checkpoint_frequency, args.checkpoint_steps, args.ema, args.clip_grad) == \
        (train.checkpoint_frequency, train.checkpoint_steps, train.ema, train.clip_grad)
    assert (args.root_path, args.keypoints, args.subset, args.downsample, args.virtual_cameras) == \
        (data.root_path, data.keypoints, data.subset, data.downsample, data.virtual_cameras)
    assert args.data_augmentation is WindowConfig().flip is True
    assert args.test_time_augmentation is EvalConfig().flip is True
    assert args.ddp_timeout == DEFAULT_TIMEOUT_S == 300.0
    assert args.dataset == dataset


def test_model_flags_stay_unset():
    args = parse([])
    for name in ('model', 'frames', 'architecture', 'channels', 'dropout', 'chunk_size', 'gamma_divider', 'embed_dim',
                 'depth', 'layers', 'channel', 'd_hid', 'tds', 'temporal_mask_rate', 'spatial_mask_num', 'preset',
                 'optimizer', 'causal', 'uncausal', 'joint_related', 'MAE', 'train_mode'):
        assert getattr(args, name) is None, name


def test_runner_passes_the_parsed_values_to_train_config(tmp_path, monkeypatch):
    """No flag: TrainConfig's defaults reach the engine; given flags reach it unchanged."""
    import common.train.engine
    seen = []
    monkeypatch.setattr(common.train.engine, 'fit', lambda model, train_set, tests, spec, cfg, *rest: seen.append(cfg) or {})
    data = write_tiny_h36m(tmp_path / 'data', frames=30)
    base = ['-d', 'h36m', '-k', 'gt', '--root_path', data, '-str', 'S1', '-ste', 'S9', '-arc', '3,3', '-ch', '8',
            '-c', tmp_path / 'ck', '--nolog']
    code, _, err = run_inprocess(base)
    assert code == 0, err
    code, _, err = run_inprocess(base + ['-e', 3, '-b', 7, '-lr', 2e-4, '-lrd', 0.5, '--weight-decay', 0.01])
    assert code == 0, err
    defaults, given = seen
    reference = TrainConfig()
    assert (defaults.epochs, defaults.batch_size, defaults.lr, defaults.lr_decay, defaults.weight_decay) == \
        (reference.epochs, reference.batch_size, reference.lr, reference.lr_decay, reference.weight_decay)
    assert (given.epochs, given.batch_size, given.lr, given.lr_decay, given.weight_decay) == (3, 7, 2e-4, 0.5, 0.01)


# ----------------------------------------------------------------------------- --help

@pytest.mark.parametrize('script, dataset, viz', SCRIPTS)
def test_help_shows_real_defaults_and_never_none(script, dataset, viz):
    text = help_text(script, viz)
    flat = ' '.join(text.split())
    cfg = TrainConfig()
    assert '(default: None)' not in flat and 'default: None' not in flat
    for value in (cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_decay):
        assert f'(default: {value})' in flat, value
    assert '(default: 60)' in flat and '(default: 1024)' in flat and '(default: 0.001)' in flat
    assert "default: the model's" in flat
    assert text.rstrip().splitlines()[-1].strip().startswith(f'python {script}')  # the examples block ends it
    assert 'examples:' in text and f'python {script} --recipe' in text


@pytest.mark.parametrize('script, dataset, viz', SCRIPTS)
def test_no_flag_shows_two_defaults(script, dataset, viz):
    parser = build_parser(script, '', dataset, viz=viz)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.help is None or action.help == '==SUPPRESS==':
            continue
        shown = formatter._expand_help(action) if action.help else ''
        assert shown.count('default') <= 1, (action.option_strings, shown)
        assert 'None' not in shown, (action.option_strings, shown)


def test_model_flags_say_the_model_default_in_words():
    parser = build_parser()
    formatter = parser._get_formatter()
    group = next(g for g in parser._action_groups if g.title.startswith('model'))
    for action in group._group_actions:
        if action.default is None and action.nargs != 0 and action.dest not in ('model', 'mask_stride', 'tds',
                                                                                 'previous_refine_name', 'lr_refine'):
            assert "default: the model's" in formatter._expand_help(action), action.option_strings


def test_flip_switches_say_they_turn_an_on_default_off():
    flat = ' '.join(help_text().split())
    assert '-no-da, --no-data-augmentation turn OFF train-time flip augmentation (it is on by default)' in flat
    assert '-no-tta, --no-test-time-augmentation turn OFF test-time flip averaging (it is on by default)' in flat
    assert parse(['-no-da', '-no-tta']).data_augmentation is False
    assert parse(['-no-da']).test_time_augmentation is True


# ----------------------------------------------------------------------------- values

@pytest.mark.parametrize('argv, expected', [
    (['-e=-1'], ['-e/--epochs', 'must be an integer >= 0 (0: evaluate only), got -1']),
    (['-e', '-1'], ['-e/--epochs', 'got -1']),
    (['-e', '1.5'], ['-e/--epochs', "expected an integer, got '1.5'"]),
    (['-b=-5'], ['-b/--batch-size', 'must be a positive integer, got -5']),
    (['-b', '0'], ['-b/--batch-size', 'must be a positive integer, got 0']),
    (['-lr=-1e-3'], ['-lr/--lr', 'must be a number > 0, got -1e-3']),
    (['-lr', '-1e-3'], ['-lr/--lr', 'must be a number > 0, got -1e-3']),
    (['-lr', '-2E+1'], ['-lr/--lr', 'must be a number > 0, got -2E+1']),
    (['-lr', '-.5'], ['-lr/--lr', 'got -.5']),
    (['-lr', '0'], ['-lr/--lr', 'must be a number > 0, got 0']),
    (['-lr', 'nan'], ['-lr/--lr', "expected a finite number, got 'nan'"]),
    (['-lr', '-inf'], ['-lr/--lr', "expected a finite number, got '-inf'"]),
    (['-lrd', '0'], ['-lrd/--lr-decay', 'must be a number in (0, 1], got 0']),
    (['-lrd', '1.5'], ['-lrd/--lr-decay', 'got 1.5']),
    (['--weight-decay', '-1e-4'], ['--weight-decay', 'must be a number >= 0, got -1e-4']),
    (['-f', '0'], ['-f/--frames', 'must be a positive integer, got 0']),
    (['--model', 'mixste', '-f', '0'], ['-f/--frames', 'must be a positive integer, got 0']),
    (['-arc', '3,0,3'], ['-arc/--architecture', "integers >= 1, got '3,0,3'"]),
    (['-ch', '0'], ['-ch/--channels', 'got 0']),
    (['-drop', '1'], ['-drop/--dropout', 'must be a number in [0, 1), got 1']),
    (['-drop', '-0.1'], ['-drop/--dropout', 'got -0.1']),
    (['--chunk-size', '0'], ['--chunk-size', 'got 0']),
    (['--gamma-divider', '0'], ['--gamma-divider', 'must be a number > 0']),
    (['-cs', '0'], ['-cs/--embed-dim', 'got 0']),
    (['-dep', '0'], ['-dep/--depth', 'got 0']),
    (['--layers', '0'], ['--layers', 'got 0']),
    (['--channel', '0'], ['--channel', 'got 0']),
    (['--d_hid', '0'], ['--d_hid', 'got 0']),
    (['-tds', '0'], ['-tds/--tds', 'got 0']),
    (['-tmr', '1.0'], ['-tmr/--temporal_mask_rate', 'must be a number in [0, 1), got 1.0']),
    (['-smn', '-1'], ['-smn/--spatial_mask_num', 'must be an integer >= 0, got -1']),
    (['--MAE_reload', '2'], ['--MAE_reload', 'must be 0 or 1, got 2']),
    (['--reload', '2'], ['--reload', 'got 2']),
    (['--refine_reload', '-1'], ['--refine_reload', 'got -1']),
    (['--train', '2'], ['--train', 'got 2']),
    (['--forced_mask_stride', '0'], ['--forced_mask_stride', 'got 0']),
    (['--lr_refine', '0'], ['--lr_refine', 'must be a number > 0, got 0']),
    (['--warmup', '-1'], ['--warmup', 'got -1']),
    (['--clip-grad', '0'], ['--clip-grad', 'must be a number > 0, got 0']),
    (['-s', '0'], ['-s/--stride', 'must be a positive integer, got 0']),
    (['--seed', '-3'], ['--seed', 'got -3']),
    (['-gpu', '-1'], ['-gpu/--gpu', "integers >= 0, got '-1'"]),
    (['--workers', '-1'], ['--workers', 'got -1']),
    (['--ema', '0'], ['--ema', 'must be a number in (0, 1), got 0']),
    (['--ema', '1'], ['--ema', 'got 1']),
    (['--accumulate', '0'], ['--accumulate', 'got 0']),
    (['--max-steps-per-epoch', '0'], ['--max-steps-per-epoch', 'got 0']),
    (['--ddp-timeout', '0'], ['--ddp-timeout', 'must be a number > 0, got 0']),
    (['--ddp-timeout', '-30'], ['--ddp-timeout', 'got -30']),
    (['--checkpoint-frequency', '-1'], ['--checkpoint-frequency', 'got -1']),
    (['--checkpoint-steps', '-1'], ['--checkpoint-steps', 'got -1']),
    (['--subset', '0'], ['--subset', 'must be a number in (0, 1], got 0']),
    (['--subset', '1.5'], ['--subset', 'got 1.5']),
    (['--downsample', '0'], ['--downsample', 'got 0']),
    (['--virtual-cameras', '-2'], ['--virtual-cameras', 'got -2']),
])
def test_out_of_range_values_are_one_line_errors(argv, expected, capsys):
    line = parse_error(argv, capsys)
    assert all(text in line for text in expected), line
    assert 'expected one argument' not in line


@pytest.mark.parametrize('argv, expected', [
    (['--viz-limit', '0'], ['--viz-limit', 'must be -1 or a positive integer, got 0']),
    (['--viz-limit', '-2'], ['--viz-limit', 'got -2']),
    (['--viz-camera', '-1'], ['--viz-camera', 'got -1']),
    (['--viz-downsample', '0'], ['--viz-downsample', 'got 0']),
    (['--viz-size', '0'], ['--viz-size', 'got 0']),
    (['--viz-bitrate', '0'], ['--viz-bitrate', 'got 0']),
    (['--viz-skip', '-1'], ['--viz-skip', 'got -1']),
])
def test_render_values_are_checked_too(argv, expected, capsys):
    line = parse_error(argv, capsys, 'render.py', viz=True)
    assert all(text in line for text in expected), line
    assert parse(['--viz-limit', '-1'], 'render.py', viz=True).viz_limit == -1


def test_zero_means_zero_where_it_is_meaningful():
    args = parse(['-e', '0', '-smn', '0', '-tmr', '0', '-drop', '0', '--weight-decay', '0', '--warmup', '0',
                  '--virtual-cameras', '0', '--checkpoint-frequency', '0', '--seed', '0', '--workers', '0'])
    assert (args.epochs, args.spatial_mask_num, args.temporal_mask_rate, args.dropout, args.weight_decay) == \
        (0, 0, 0.0, 0.0, 0.0)


def test_negative_numbers_in_any_notation_are_values():
    assert parse(['--viz-limit', '-1'], 'render.py', viz=True).viz_limit == -1
    assert parse(['-lr', '1e-3']).lr == 1e-3 and parse(['-lr', '2E-4']).lr == 2e-4
    assert parse(['-lr=5e-5']).lr == 5e-5


def test_root_path_naming_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / 'data_3d_h36m.npz'
    path.write_bytes(b'')
    line = parse_error(['--root_path', path], capsys)
    assert f"'{path}' is a file, not a directory" in line
    assert parse(['--root_path', tmp_path / 'not_yet']).root_path == str(tmp_path / 'not_yet')


# ----------------------------------------------------------------------------- unknown flags

@pytest.mark.parametrize('argv, flag, suggestion', [
    (['--epoch', '5'], '--epoch', '--epochs'),
    (['--epoch=5'], '--epoch', '--epochs'),
    (['--nepo', '5'], '--nepo', '--nepoch'),
    (['--batch', '5'], '--batch', '--batch-size'),
    (['-tm', '0.8'], '-tm', '-tmr'),
    (['-no-t'], '-no-t', '-no-tta'),
    (['--joint-relatd'], '--joint-relatd', '--joint-related'),
])
def test_abbreviations_and_typos_are_refused_with_the_closest_flag(argv, flag, suggestion, capsys):
    line = parse_error(argv, capsys)
    assert f'unrecognized argument {flag}; did you mean {suggestion}?' in line, line


def test_abbreviation_note_only_for_prefixes(capsys):
    assert 'cannot be abbreviated' in parse_error(['--epoch', '5'], capsys)
    line = parse_error(['--joint-relatd'], capsys)
    assert 'cannot be abbreviated' not in line
    assert parse_error(['stray'], capsys) == 'error: unrecognized arguments: stray (see --help)'


def test_short_flags_still_take_attached_values():
    assert parse(['-e5']).epochs == 5 and parse(['-b=32']).batch_size == 32


# ----------------------------------------------------------------------------- -e 0

@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return write_tiny_h36m(tmp_path_factory.mktemp('data'), frames=60)


def test_zero_epochs_evaluates_the_built_model_and_writes_results(tiny_data, tmp_path):
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck', '--results-json', tmp_path / 'r.json',
                                             epochs=0))
    assert code == 0, err
    assert 'INFO: -e 0: no training' in out
    assert not re.search(r'^\[1\] lr', out, re.M)  # no epoch ran
    results = json.load(open(tmp_path / 'r.json'))
    assert results['mpjpe'] > 0 and 'per_action' in results
    assert not any((tmp_path / 'ck' / name).exists() for name in ('latest.pt', 'best.pt'))


def test_zero_epochs_with_resume_scores_the_loaded_weights(tiny_data, tmp_path):
    code, _, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck', epochs=1, steps=3))
    assert code == 0, err
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'ck', '--evaluate', 'latest.pt',
                                             '--results-json', tmp_path / 'evaluated.json'))
    assert code == 0, err
    assert 'INFO: -e 0' not in out
    code, out, err = run_inprocess(tiny_args(tiny_data, tmp_path / 'again', '--resume', tmp_path / 'ck' / 'latest.pt',
                                             '--results-json', tmp_path / 'resumed.json', epochs=0))
    assert code == 0, err
    assert 'INFO: -e 0' in out
    evaluated = json.load(open(tmp_path / 'evaluated.json'))
    resumed = json.load(open(tmp_path / 'resumed.json'))
    assert resumed['mpjpe'] == pytest.approx(evaluated['mpjpe'], rel=1e-6)


# --model offers exactly the lifters a user can pick --------------------------------------------

def test_model_flag_offers_the_selectable_lifters_only(capsys):
    from models import lifter_names, model_names
    names = lifter_names()
    assert 'refine' in model_names() and 'refine' not in names and 'refined' not in names
    assert {'videopose', 'retnet', 'mixste', 'stc', 'stmo', 'aptpose', 'strided', 'uplift_upsample',
            'context_pose'} == set(names)
    flat = ' '.join(help_text().split())
    assert f"lifter to use ({', '.join(names)};" in flat
    assert parse(['--model', 'pstmo']).model == 'pstmo'  # aliases stay accepted
    assert "'refine' is not a lifter of its own" in parse_error(['--model', 'refine'], capsys)
    line = parse_error(['--model', 'mixtse'], capsys)
    assert "unknown model 'mixtse'; did you mean 'mixste'?" in line and 'refine' not in line


def test_readme_model_table_lists_the_same_lifters():
    import os
    from models import lifter_names
    readme = open(os.path.join(os.path.dirname(__file__), '..', '..', 'README.md')).read()
    table = readme.split('| model (`--model`) |', 1)[1].split('\n\n', 1)[0]
    listed = re.findall(r'`([a-z_]+)`', ''.join(line.split('|')[1] for line in table.splitlines()[2:]))
    assert sorted(listed) == sorted(lifter_names())
