"""Published recipes: one small JSON file per command of the releases, in ``configs/``.

A recipe names the script it is for, says in one line what it does, and lists its flags::

    {"script": "run.py", "description": "P-STMO-S, Human3.6M CPN: stage II, fine-tuning ...",
     "source": "P-STMO (ECCV 2022)", "notes": "-e 79: ...", "flags": {"-f": 243, "-b": 160, ...}}

``source`` (the release) and ``notes`` (what differs from it, or what to add) are optional.
``flags`` maps a flag (any spelling the parser accepts) to its value: ``true`` for a switch, a
number or a string otherwise, a list for comma-separated values (``"-arc": [3, 3, 3]``).
``python run.py --recipe NAME`` (a name in configs/ or a path to such a file) expands to these
flags, placed before the ones typed on the command line, so that the typed ones win.
"""
import difflib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from common.cli.config_files import read_json_object

RECIPE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs')
SCRIPTS = ('run.py', 'run_3dhp.py', 'render.py', 'run_in_the_wild.py')



class RecipeError(ValueError):
    """A recipe that cannot be found or read; the message is one line."""


@dataclass(frozen=True)
class Recipe:
    name: str
    script: str
    description: str
    flags: Dict[str, object] = field(default_factory=dict)
    source: str = ''
    notes: str = ''
    path: str = ''

    def argv(self) -> List[str]:
        """The flags as command-line tokens, in the file's order."""
        tokens = []
        for flag, value in self.flags.items():
            if value is True:
                tokens.append(flag)
            elif isinstance(value, list):
                tokens += [flag, ','.join(str(v) for v in value)]
            else:
                tokens += [flag, str(value)]
        return tokens

    def command(self) -> str:
        """The recipe as one shell command line (for listings and documentation)."""
        quoted = [t if t and all(c.isalnum() or c in '-_.,/=:' for c in t) else repr(t) for t in self.argv()]
        return ' '.join(['python', self.script] + quoted)


def recipe_names(directory: str = RECIPE_DIR) -> List[str]:
    """Names of the recipes in ``directory`` (file names without .json), sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(n[:-len('.json')] for n in os.listdir(directory) if n.endswith('.json'))


def _locate(name_or_path: str, directory: str) -> str:
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(directory, name_or_path if name_or_path.endswith('.json') else name_or_path + '.json')
    if os.path.isfile(candidate):
        return candidate
    names = recipe_names(directory)
    close = difflib.get_close_matches(name_or_path, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ''
    raise RecipeError(f"unknown recipe '{name_or_path}' ({hint}--recipe list shows them all)")


def load_recipe(name_or_path: str, directory: str = RECIPE_DIR) -> Recipe:
    """The recipe of a name in ``directory`` or of a JSON file's path; RecipeError otherwise."""
    path = _locate(name_or_path, directory)
    data = read_json_object(path, 'recipe', RecipeError)
    missing = [key for key in ('script', 'description', 'flags') if key not in data]
    if missing:
        raise RecipeError(f"recipe '{path}' lacks {', '.join(missing)}")
    unknown = sorted(set(data) - {'script', 'description', 'flags', 'source', 'notes'})
    if unknown:
        raise RecipeError(f"recipe '{path}' has unknown keys {unknown} (script, description, flags, source, notes)")
    if data['script'] not in SCRIPTS:
        raise RecipeError(f"recipe '{path}' names script '{data['script']}'; expected one of {', '.join(SCRIPTS)}")
    flags = data['flags']
    if not isinstance(flags, dict):
        raise RecipeError(f"recipe '{path}': flags must be an object of flag -> value")
    for flag, value in flags.items():
        if not flag.startswith('-'):
            raise RecipeError(f"recipe '{path}': '{flag}' is not a flag (flags start with '-')")
        if flag == '--recipe':
            raise RecipeError(f"recipe '{path}' names another recipe; recipes do not nest")
        if value is False or value is None or isinstance(value, dict):
            raise RecipeError(f"recipe '{path}': {flag} must be true (a switch), a number, a string or a list")
    name = os.path.splitext(os.path.basename(path))[0]
    return Recipe(name=name, script=data['script'], description=str(data['description']), flags=dict(flags),
                  source=str(data.get('source', '')), notes=str(data.get('notes', '')), path=path)


def all_recipes(directory: str = RECIPE_DIR) -> List[Recipe]:
    return [load_recipe(name, directory) for name in recipe_names(directory)]


def format_recipe_list(script: Optional[str] = None, directory: str = RECIPE_DIR) -> str:
    """One line per recipe: name, script, description; ``script``'s own recipes first."""
    recipes = all_recipes(directory)
    if not recipes:
        return f'no recipes in {directory}'
    recipes.sort(key=lambda r: (r.script != script, SCRIPTS.index(r.script), r.name))
    width = max(len(r.name) for r in recipes)
    lines = [f'{r.name:<{width}}  {r.script:<11}  {r.description}' for r in recipes]
    return '\n'.join(lines + [f'({len(recipes)} recipes in {directory}; run one with: '
                              f'python SCRIPT --recipe NAME [flags that override it])'])
