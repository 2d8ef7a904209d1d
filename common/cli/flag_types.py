"""argparse ``type=`` converters that check values as the command line is parsed: numbers in a
range (one-line errors that say what is allowed), comma-separated lists, directories."""
import argparse
import math
import os


def _range_text(kind, low, high, low_open, high_open):
    noun = 'an integer' if kind is int else 'a number'
    if kind is int and (low, high) == (0, 1):
        return '0 or 1'
    if low is not None and high is not None:
        return f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if kind is int and low == 1 and not low_open:
        return 'a positive integer'
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {low:g}"
    return f"{noun} {'<' if high_open else '<='} {high:g}"


def number(kind, low=None, high=None, low_open=False, high_open=False, note='', accept=()):
    """argparse ``type=``: ``kind`` (int or float) in [low, high] (``*_open``: that end
    excluded); values in ``accept`` pass as well; floats must be finite. ``note`` is said in
    the error, e.g. what 0 means."""
    wanted = _range_text(kind, low, high, low_open, high_open)
    if accept:
        wanted = ' or '.join(f'{v:g}' for v in accept) + f' or {wanted}'

    def convert(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from None
        if value in accept:
            return value
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
        if (low is not None and (value < low or (low_open and value == low))) or \
                (high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f'must be {wanted}{note}, got {text}')
        return value
    convert.__name__ = kind.__name__
    return convert


POSITIVE_INT = number(int, 1)
COUNT = number(int, 0)                       # 0 allowed and meaning none / off
POSITIVE = number(float, 0, low_open=True)
NON_NEGATIVE = number(float, 0)
FRACTION = number(float, 0, 1, high_open=True)  # probabilities and rates: [0, 1)
SWITCH_01 = number(int, 0, 1)


def int_list(low):
    def convert(text):
        try:
            values = [int(v) for v in str(text).split(',') if v != '']
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
        if not values or any(v < low for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers >= {low}, got '{text}'")
        return values
    convert.__name__ = 'list'
    return convert


def str_list(text):
    return [v for v in str(text).split(',') if v]


def directory(text):
    """A directory path; one that does not exist yet is left to the readers (they say which
    file is missing), a path naming a file is refused."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a file, not a directory")
    return text


def model_name(text):
    """A model a user can pick (a name of models.lifter_names() or one of its aliases), returned
    as typed; anything else is refused with the list and the closest name."""
    import difflib

    from models import lifter_names, model_names, resolve_name
    names = lifter_names()
    if resolve_name(text) in names:
        return text
    if resolve_name(text) in model_names():  # a part other models are built from
        raise argparse.ArgumentTypeError(f"'{text}' is not a lifter of its own: the refine module is added to one "
                                         f"with --refine (training) or --refine_reload 1 (evaluation)")
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    raise argparse.ArgumentTypeError(f"unknown model '{text}'{hint} (choose one of: {', '.join(names)})")
