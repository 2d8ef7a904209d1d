"""Published recipes (configs/*.json): each parses with the script it names, command-line flags
override it, a recipe for another script or an unknown name is one line, --recipe list shows
them all; one small CPU recipe per registered lifter, one of them run end to end."""
import json
import os
import re
import shlex

import pytest

from common.cli.arguments import build_parser
from common.cli.command_line import check_conflicts, infer_model_name
from common.cli.recipes import RECIPE_DIR, SCRIPTS, all_recipes, load_recipe, recipe_names
from helpers_data import ROOT, run_inprocess, single_thread  # noqa: F401

RECIPES = all_recipes()
LIFTERS = ['videopose', 'retnet', 'mixste', 'stc', 'stmo', 'aptpose', 'strided', 'uplift_upsample']


def parser_for(script):
    return build_parser(script, '', '3dhp' if script == 'run_3dhp.py' else 'h36m', viz=script == 'render.py')


def one_line_error(argv, capsys, script='run.py'):
    with pytest.raises(SystemExit) as exit_:
        parser_for(script).parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith('error: '), err
    return err.strip()


def test_the_recipes_are_there():
    names = recipe_names()
    assert len(names) == len(RECIPES) >= 40
    for expected in ('pstmo_s_h36m_cpn_stage1', 'pstmo_s_h36m_cpn_stage2', 'pstmo_s_h36m_cpn_eval',
                     'pstmo_s_h36m_gt_stage1', 'pstmo_h36m_cpn_refine_eval', 'pstmo_h36m_cpn_refine_train',
                     'pstmo_s_3dhp_stage1', 'pstmo_s_3dhp_eval', 'aptpose_h36m_cpn_stage1', 'aptpose_3dhp_eval',
                     'retnet_h36m_cpn_243_eval', 'retnet_h36m_cpn_81_eval', 'retnet_h36m_cpn_27_eval',
                     'retnet_h36m_cpn_243_train', 'retnet_3dhp_univ_train', 'retnet_3dhp_mpii3d_train',
                     'videopose_h36m_cpn_243_eval', 'videopose_h36m_cpn_243_train', 'strided_h36m_cpn_351_refine_eval',
                     'uplift_h36m_351_train', 'uplift_h36m_81_eval', 'uplift_amass_351_pretrain'):
        assert expected in names, expected
    assert sorted(n for n in names if n.startswith('cpu_')) == sorted(f'cpu_{m}' for m in LIFTERS)


@pytest.mark.parametrize('recipe', RECIPES, ids=[r.name for r in RECIPES])
def test_every_recipe_parses_with_the_script_it_names(recipe):
    assert recipe.script in SCRIPTS
    assert recipe.description and '\n' not in recipe.description and len(recipe.description) <= 120
    args = parser_for(recipe.script).parse_args(['--recipe', recipe.name])
    check_conflicts(args)  # raises on contradictory flags
    assert args.recipe == recipe.name
    for flag, value in recipe.flags.items():  # every flag reached the namespace with its value
        action = parser_for(recipe.script)._option_string_actions[flag]
        parsed = getattr(args, action.dest)
        if value is True:
            assert parsed in (True, 1) or action.const == parsed, flag
        elif action.type is not None and not isinstance(value, str):
            assert parsed == (action.type(str(value))), flag
        elif isinstance(value, str) and action.type is None:
            assert parsed == value, flag


@pytest.mark.parametrize('recipe', RECIPES, ids=[r.name for r in RECIPES])
def test_training_recipes_build_the_release_model_family(recipe):
    args = parser_for(recipe.script).parse_args(['--recipe', recipe.name])
    family = recipe.name.split('_')[0]
    expected = {'pstmo': 'stmo', 'aptpose': 'aptpose', 'retnet': 'retnet', 'videopose': 'videopose',
                'strided': 'strided', 'uplift': 'uplift_upsample', 'context': 'context_pose'}.get(family)
    training = args.train == 1 or not (args.evaluate or args.reload)
    if recipe.name.startswith('cpu_'):
        assert infer_model_name(args) == recipe.name[len('cpu_'):]
    elif training and recipe.script != 'render.py':
        assert infer_model_name(args) == expected, recipe.name


def test_command_line_flags_override_the_recipe():
    recipe = load_recipe('pstmo_s_h36m_cpn_stage2')
    assert recipe.flags['-b'] == 160 and recipe.flags['--lr'] == 0.0007
    args = parser_for('run.py').parse_args(['--recipe', 'pstmo_s_h36m_cpn_stage2', '-b', '64', '--lr', '1e-4'])
    assert (args.batch_size, args.lr) == (64, 1e-4)
    assert (args.frames, args.layers, args.tds, args.lr_decay, args.MAE_reload, args.train) == (243, 3, 2, 0.97, 1, 1)
    assert args.previous_dir == recipe.flags['--previous_dir']
    # typed before --recipe, a flag still wins; an alias spelling overrides too
    args = parser_for('run.py').parse_args(['--batch_size', '32', '--recipe', 'pstmo_s_h36m_cpn_stage2', '-e', '0'])
    assert (args.batch_size, args.epochs) == (32, 0)


def test_a_recipe_file_given_by_path(tmp_path):
    path = tmp_path / 'mine.json'
    path.write_text(json.dumps({'script': 'run.py', 'description': 'mine', 'flags': {'-arc': [3, 3], '-e': 2,
                                                                                    '--causal': True}}))
    args = parser_for('run.py').parse_args(['--recipe', str(path), '-e', '5'])
    assert (args.architecture, args.epochs, args.causal) == ([3, 3], 5, True)


def test_recipe_for_another_script_is_one_line(capsys):
    line = one_line_error(['--recipe', 'pstmo_s_3dhp_stage1'], capsys)
    assert "recipe 'pstmo_s_3dhp_stage1' is for run_3dhp.py, not run.py" in line
    line = one_line_error(['--recipe', 'pstmo_s_h36m_cpn_stage1'], capsys, 'run_3dhp.py')
    assert 'is for run.py, not run_3dhp.py' in line
    line = one_line_error(['--recipe', 'retnet_h36m_cpn_243_render'], capsys)
    assert 'is for render.py, not run.py' in line


def test_unknown_recipe_suggests_the_closest_name(capsys):
    line = one_line_error(['--recipe', 'pstmo_s_h36m_cpn_stage'], capsys)
    assert "unknown recipe 'pstmo_s_h36m_cpn_stage'" in line and "did you mean 'pstmo_s_h36m_cpn_stage" in line


@pytest.mark.parametrize('content, expected', [
    ('{"script": "run.py", "flags": {}', 'is not valid JSON'),
    ('{"script": "run.py", "flags": {}}', 'lacks description'),
    ('{"script": "train.py", "description": "x", "flags": {}}', "names script 'train.py'"),
    ('{"script": "run.py", "description": "x", "flags": {"-e": false}}', '-e must be true'),
    ('{"script": "run.py", "description": "x", "flags": {"e": 1}}', "'e' is not a flag"),
    ('{"script": "run.py", "description": "x", "flags": {"--recipe": "y"}}', 'recipes do not nest'),
    ('{"script": "run.py", "description": "x", "flags": {"-e": -1}}', 'must be an integer >= 0'),
    ('{"script": "run.py", "description": "x", "flags": {"--epoch": 1}}', 'did you mean --epochs?'),
])
def test_broken_recipe_files_are_one_line(content, expected, tmp_path, capsys):
    path = tmp_path / 'broken.json'
    path.write_text(content)
    assert expected in one_line_error(['--recipe', str(path)], capsys)


def test_recipe_list_prints_every_name_with_its_description(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser_for('run.py').parse_args(['--recipe', 'list'])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for recipe in RECIPES:
        assert re.search(rf'^{recipe.name} +{re.escape(recipe.script)} +{re.escape(recipe.description)}$', out, re.M), \
            recipe.name
    first = out.splitlines()[0].split()
    assert load_recipe(first[0]).script == 'run.py'  # this script's recipes come first


def test_recipe_dir_is_the_configs_folder():
    assert os.path.samefile(RECIPE_DIR, os.path.join(ROOT, 'configs'))


def published_commands():
    """The commands of README's 'The published commands' block, as (script, argv)."""
    text = open(os.path.join(ROOT, 'README.md')).read()
    block = text.split('## The published commands', 1)[1].split('```bash', 1)[1].split('```', 1)[0]
    commands = []
    for line in block.splitlines():
        if line.startswith('python '):
            words = shlex.split(line)
            commands.append((words[1], words[2:]))
    return commands


@pytest.mark.parametrize('script, argv', published_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_published_commands_parse_unchanged(script, argv):
    args = parser_for(script).parse_args(argv)
    check_conflicts(args)


@pytest.mark.parametrize('model', LIFTERS)
def test_cpu_recipe_parses_for_each_lifter(model):
    recipe = load_recipe(f'cpu_{model}')
    assert recipe.script == 'run.py'
    args = parser_for('run.py').parse_args(['--recipe', recipe.name])
    assert infer_model_name(args) == model
    assert (args.dataset, args.epochs, args.nolog) == ('synthetic', 1, True)


def test_a_cpu_recipe_end_to_end(tmp_path):
    from common.data.synthetic import ensure_synthetic
    ensure_synthetic(str(tmp_path / 'data' / 'synthetic'), 'h36m')
    code, out, err = run_inprocess(['--recipe', 'cpu_videopose', '--root_path', tmp_path / 'data',
                                    '-c', tmp_path / 'ck', '--results-json', tmp_path / 'results.json'])
    assert code == 0, err
    assert re.search(r'^\[1\] lr 0.001 ', out.replace('\r', '\n'), re.M), out[-2000:]
    results = json.load(open(tmp_path / 'results.json'))
    assert 0 < results['mpjpe'] < 1000
    assert results['config']['model'] == 'videopose'
    assert (tmp_path / 'ck' / 'latest.pt').exists()


TRAINING = [r for r in RECIPES if r.script != 'render.py' and not {'--evaluate', '--reload'} & set(r.flags)]


@pytest.mark.parametrize('recipe', TRAINING, ids=[r.name for r in TRAINING])
def test_training_recipes_build_their_model(recipe):
    """The model a training recipe starts from is built (weights are not loaded or trained)."""
    from common.data.datasets import H36M_SPEC
    from common.data.mpi_inf_3dhp import SPEC_17
    from common.cli.model_setup import build_lifter
    args = parser_for(recipe.script).parse_args(['--recipe', recipe.name])
    model, name, _ = build_lifter(args, SPEC_17 if recipe.script == 'run_3dhp.py' else H36M_SPEC)
    assert name == infer_model_name(args)
    if args.frames and name != 'uplift_upsample':  # Uplift-and-Upsample's -f counts tokens, not frames
        assert model.receptive_field == args.frames
