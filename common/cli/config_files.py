"""``--config FILE``: a configuration file read as flags placed before the typed ones, so that
flags typed on the command line win. The reader is chosen by the file's suffix; files of other
formats pass unchanged (their reader works on the parsed namespace)."""
import json
import os
from typing import List, Optional

from common.errors import UserError


def raw_flag_value(args: List[str], flag: str) -> Optional[str]:
    """The value of ``flag`` in a command line not parsed yet (the flags that bring other flags:
    --recipe, --config). None when it is absent, or when its value is missing (argparse then says
    so); ValueError when it is given twice."""
    at = [i for i, a in enumerate(args) if a == flag or a.startswith(flag + '=')]
    if not at:
        return None
    if len(at) > 1:
        raise ValueError(f'{flag} given more than once')
    i = at[0]
    if args[i] != flag:
        return args[i].split('=', 1)[1]
    return args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith('-') else None


def read_json_object(path: str, what: str, error=UserError) -> dict:
    """The JSON object in ``path`` (a ``what``: 'recipe', 'config'); ``error`` with one line naming
    the file and the problem when it cannot be read, is not JSON, or holds something else."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what} '{path}': {getattr(err, 'strerror', None) or err}") from None
    except json.JSONDecodeError as err:
        raise error(f"{what} '{path}' is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict):
        raise error(f"{what} '{path}' must hold a JSON object")
    return data


def config_argv(path: str, typed=()) -> List[str]:
    """The flags a configuration file stands for (``typed``: the command line, for readers whose
    meaning depends on it)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in ('.yaml', '.yml'):   # Context-Aware PoseFormer's experiments/*.yaml
        from common.cli.release_yaml import yaml_config_argv
        return yaml_config_argv(path, typed)
    return []   # another format: read by its own reader after parsing (the namespace keeps --config)


def expand_config(args: List[str]) -> List[str]:
    """``args`` with the flags of its --config FILE in front."""
    try:
        path = raw_flag_value(args, '--config')
    except ValueError as err:
        raise UserError(str(err)) from None
    return args if path is None else config_argv(path, args) + list(args)
