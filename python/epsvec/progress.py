"""Progress lines on the console, which is a release surface too.

Work over public units (prompts, negatives, samples: counts the caller
chose) gets a counted bar. Work over private records gets a line that shows
only the elapsed time: a count ``k/N`` would print the class size, which is
exactly what two neighbouring datasets differ in, and a redraw per chunk of
records would print it too, coarsely. Its only redraws are the first and
the last, plus one a second on a terminal (time, not records). Timing
itself is out of scope (see the README's Privacy section).
"""

from __future__ import annotations

import contextlib
import sys
import threading

__all__ = ["counted", "elapsed_only", "titled"]


def titled(desc: str, label) -> str:
    """A bar's title for one class: ``desc (label)``, or ``desc`` without a label."""
    return desc if label is None else f"{desc} ({label})"


def counted(total: int, enabled: bool, desc: str, unit: str = "prompt"):
    """A bar over ``total`` public units."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit, dynamic_ncols=True)


@contextlib.contextmanager
def elapsed_only(desc: str, enabled: bool):
    """A line ``desc: mm:ss`` while private records are read; it counts nothing."""
    from tqdm.auto import tqdm

    bar = tqdm(total=None, disable=not enabled, desc=desc, bar_format="{desc}: {elapsed}", dynamic_ncols=True)
    stop = threading.Event()
    ticker = None
    if enabled and getattr(sys.stderr, "isatty", lambda: False)():
        ticker = threading.Thread(target=_tick, args=(bar, stop), daemon=True)
        ticker.start()
    try:
        yield
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        bar.close()


def _tick(bar, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        bar.refresh()
