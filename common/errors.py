"""The one exception type the run scripts turn into a one-line message and exit code."""
import sys


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints): printed as one line,
    without a traceback, and the program exits with status 2."""


def exit_status(run, on_other_error=None) -> int:
    """Call ``run()``; 0 when it returns. A UserError prints one line on stderr and gives 2,
    Ctrl-C gives 130; any other exception goes to ``on_other_error(err)``, whose status is
    returned (it returns None to let the exception propagate with its traceback)."""
    try:
        run()
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except Exception as err:
        status = on_other_error(err) if on_other_error else None
        if status is None:
            raise
        return status
    return 0
