"""``--config FILE``: a configuration file read as flags placed before the typed ones, so that
flags typed on the command line win. The reader is chosen by the file's suffix; files of other
formats pass unchanged (their reader works on the parsed namespace)."""
import os
from typing import List

from common.errors import UserError


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
    at = [i for i, a in enumerate(args) if a == '--config' or a.startswith('--config=')]
    if not at:
        return args
    if len(at) > 1:
        raise UserError('--config given more than once')
    i = at[0]
    if args[i] == '--config':
        if i + 1 >= len(args) or args[i + 1].startswith('-'):
            return args   # argparse says: expected one argument
        path = args[i + 1]
    else:
        path = args[i].split('=', 1)[1]
    return config_argv(path, args) + list(args)
