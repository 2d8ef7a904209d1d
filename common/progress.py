"""Progress on long loops: a tqdm bar on a terminal, plain lines when the output is a file or a
pipe (a redirected log keeps one readable line per 10 % instead of thousands of carriage returns),
and the one-line forecast of a run that would take hours."""
import sys
import time

from tqdm import tqdm

PLAIN_EVERY_S = 60.0  # a plain line at least this often, so a slow loop still shows it is alive


def _duration(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class PlainProgress:
    """Iterates like tqdm and prints 'desc: n/total (p%), r it/s, h:mm:ss left' lines at every
    10 % and at least every PLAIN_EVERY_S seconds."""

    def __init__(self, iterable, desc, total, initial=0, unit='it', stream=None):
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.initial, self.stream = initial, stream or sys.stderr

    def __len__(self):
        return self.total

    def _line(self, done, started):
        elapsed = max(time.perf_counter() - started, 1e-9)
        rate = (done - self.initial) / elapsed
        text = f'{self.desc}: {done}/{self.total}'
        if self.total:
            text += f' ({100 * done // self.total}%)'
        text += f', {rate:.2f} {self.unit}/s'
        if self.total and rate > 0:
            text += f', {_duration((self.total - done) / rate)} left'
        print(text, file=self.stream, flush=True)

    def __iter__(self):
        started = last = time.perf_counter()
        done, tenth = self.initial, (10 * self.initial // self.total) if self.total else 0
        for item in self.iterable:
            try:
                yield item
            except GeneratorExit:  # the loop broke off after this item: it is done, say so
                self._line(done + 1, started)
                raise
            done += 1
            now_tenth = 10 * done // self.total if self.total else 0
            if now_tenth > tenth or time.perf_counter() - last >= PLAIN_EVERY_S:
                tenth, last = now_tenth, time.perf_counter()
                self._line(done, started)


def progress(iterable, desc, total=None, initial=0, enabled=True, unit='it', stream=None):
    """``iterable`` with progress shown on ``stream`` (stderr): tqdm when it is a terminal,
    plain lines otherwise, nothing when ``enabled`` is False."""
    stream = stream or sys.stderr
    total = total if total is not None else (len(iterable) if hasattr(iterable, '__len__') else None)
    if not enabled:
        return iterable
    if stream.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=False,
                    dynamic_ncols=True, file=stream)
    return PlainProgress(iterable, desc, total, initial, unit, stream)


#: a CPU run forecast to take longer than this gets one warning line
LONG_RUN_S = 2 * 3600.0


def long_run_warning(seconds_per_step, steps_per_epoch, epochs, device_type, hint=''):
    """The warning line for a run whose training alone would take more than LONG_RUN_S on the
    CPU (from the measured seconds per step), or None."""
    seconds = seconds_per_step * steps_per_epoch * epochs
    if device_type != 'cpu' or seconds <= LONG_RUN_S:
        return None
    return (f'WARNING: on this CPU the training alone will take about {seconds / 3600:.1f} h '
            f'({seconds_per_step:.2f} s per step x {steps_per_epoch} steps x {epochs} epochs){hint}')
