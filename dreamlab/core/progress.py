"""Progress of long work, written once: every loop that runs for a while reports through :class:`Progress`.

* stderr is a terminal: a tqdm bar (redrawn in place);
* stderr is a file or a pipe (a log): one status line every ``every`` seconds of wall time and
  one at the end, e.g. ``[dreamlab 11:32:20] dream: 1200/6000 upd (20%), 41.3 upd/s, loss 0.512``;
* progress off: nothing at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LINE_EVERY_S = 30.0  # seconds of wall time between two status lines when stderr is not a terminal


def progress_mode(enabled: bool, stream: TextIO | None = None) -> str:
    """``"off"`` when disabled, ``"bar"`` when ``stream`` (default: stderr) is a terminal, else ``"lines"``."""
    if not enabled:
        return "off"
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return "bar" if tty else "lines"


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}"


def _count(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Progress(Generic[T]):
    """A tqdm bar on a terminal, periodic status lines otherwise, silence when ``enabled`` is false.

    Takes the tqdm arguments the call sites use (``iterable``, ``total``, ``initial``, ``desc``,
    ``unit``; any other keyword goes to tqdm only) and offers ``update``, ``set_postfix``, ``n``
    and ``close``; iterating it closes it at the end (or on ``break``).
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        enabled: bool = True,
        every: float = LINE_EVERY_S,
        stream: TextIO | None = None,
        **tqdm_kwargs: Any,
    ):
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.mode = progress_mode(enabled, self.stream)
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]  # as tqdm does
        self.total = total
        self._n: float = initial
        self._start = initial
        self.postfix: dict[str, str] = {}
        self._t0 = self._last = time.monotonic()
        self._closed = False
        self._bar: tqdm | None = None
        if self.mode == "bar":
            self._bar = tqdm(
                iterable,
                total=total,
                desc=desc,
                unit=unit,
                initial=initial,
                file=self.stream,
                **{"dynamic_ncols": True, **tqdm_kwargs},
            )

    def __iter__(self) -> Iterator[T]:
        if self._bar is not None:
            yield from self._bar
            return
        if self.iterable is None:
            raise TypeError("Progress without an iterable is not iterable; call update() instead")
        try:
            for obj in self.iterable:
                yield obj
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def n(self) -> float:
        """The units done so far (``initial`` included)."""
        return self._bar.n if self._bar is not None else self._n

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units done; in line mode, print a status line when ``every`` seconds passed."""
        if self._bar is not None:
            self._bar.update(n)
            return
        self._n += n
        if self.mode == "lines":
            now = time.monotonic()
            if now - self._last >= self.every:
                self._line(now)

    def set_postfix(self, **values: Any) -> None:
        """Show ``values`` (e.g. ``loss=0.512``) after the count, replacing the previous ones;
        ``refresh=False`` is tqdm's flag (redraw later), not a value to show."""
        refresh = bool(values.pop("refresh", True))
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=refresh)
        self.postfix = {k: _value(v) for k, v in values.items()}

    def status(self, now: float | None = None) -> str:
        """The status line: ``[dreamlab HH:MM:SS] desc: n/total unit (p%), rate unit/s, key value, ...``."""
        now = time.monotonic() if now is None else now
        n = self.n
        count = (
            f"{_count(n)}/{_count(self.total)} {self.unit} ({100 * n / self.total:.0f}%)"
            if self.total
            else f"{_count(n)} {self.unit}"
        )
        rate = (n - self._start) / max(now - self._t0, 1e-9)
        parts = [count, f"{_num(rate)} {self.unit}/s", *(f"{k} {v}" for k, v in self.postfix.items())]
        return f"[dreamlab {time.strftime('%H:%M:%S')}] {self.desc}: {', '.join(parts)}"

    def _line(self, now: float, end: str = "") -> None:
        self._last = now
        print(self.status(now) + end, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar; in line mode, print the final status line (once)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines":
            now = time.monotonic()
            self._line(now, f" (done in {now - self._t0:.0f} s)")
