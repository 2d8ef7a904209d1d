"""Timing shared by the benchmarks: mean seconds per call after one warm-up call."""
import time


def measure(fn, repeats):
    """Mean seconds of ``fn()`` over ``repeats`` calls, after one call that is not counted (caches,
    lazy initialisation)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats
