"""Episode writers for the collector: inline, or in a separate writer process.

Both take finished episodes with ``submit`` and append them to an :class:`EpisodeStore` in
batches: a batch goes out at the first episode end at least ``interval`` seconds after the
previous one (one disk flush and one index update per batch), and ``close`` sends the rest.

* :class:`InlineWriter` writes in the calling thread (a writer *thread* would fight the stepping
  loop for the GIL on every I/O call, which measured slower than writing inline).
* :class:`ProcessWriter` hands each batch to a forked child process over a pipe, so compressing
  and writing archives runs on another core while the parent keeps stepping. Batches travel as
  raw array bytes plus a JSON header (no pickle). The child ignores SIGINT: on Ctrl-C the parent's
  ``close`` still sends every finished episode; if the parent dies, the child still writes every
  batch it received before the pipe closed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
import time
from typing import Any

import numpy as np

from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.store import EpisodeStore, StoreError


class InlineWriter:
    def __init__(self, store: EpisodeStore, interval: float = 0.25):
        self.store, self.interval = store, interval
        self.pending: list[Episode] = []
        self.written_steps = self.written_episodes = self.writes = 0
        self.seconds = 0.0  # time the collecting thread spent writing
        self.last = time.monotonic()

    def submit(self, ep: Episode) -> None:
        self.pending.append(ep)
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            t = time.perf_counter()
            eps, self.pending = self.pending, []
            written: list[Episode] = []
            try:
                self.store.add_many(eps)
                written = eps
            except EpisodeError:  # keep the valid ones, then report the first bad one
                written = _add_valid(self.store, eps)
                raise
            finally:
                self.seconds += time.perf_counter() - t
                self.written_episodes += len(written)
                self.written_steps += sum(e.num_steps for e in written)
                self.writes += 1
        self.last = time.monotonic()

    def close(self) -> None:
        self.flush()


def _add_valid(store: EpisodeStore, episodes: list[Episode]) -> list[Episode]:
    """Add each episode that validates (one by one); returns those added."""
    done = []
    for ep in episodes:
        try:
            store.add(ep)
            done.append(ep)
        except EpisodeError:
            pass
    return done


def pack(episodes: list[Episode]) -> bytes:
    """Episodes -> one message: 8-byte header length, JSON header, raw array bytes (no pickle)."""
    header: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    off = 0
    for ep in episodes:
        fields = {}
        for k, a in ep.arrays().items():
            raw = np.ascontiguousarray(a).tobytes()
            fields[k] = [a.dtype.str, list(a.shape), off, len(raw)]
            chunks.append(raw)
            off += len(raw)
        header.append(fields)
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def unpack(msg: bytes) -> list[Episode]:
    n = int.from_bytes(msg[:8], "little")
    header = json.loads(msg[8 : 8 + n])
    body = memoryview(msg)[8 + n :]
    episodes = []
    for fields in header:
        arrs = {}
        for k, (dtype, shape, off, size) in fields.items():
            dt = np.dtype(dtype)
            if dt.hasobject:
                raise StoreError(f"writer message: field '{k}' has an object dtype")
            arrs[k] = np.frombuffer(body[off : off + size], dtype=dt).reshape(shape)
        episodes.append(Episode(**arrs))
    return episodes


def _child(conn: Any, root: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    store = EpisodeStore(root)
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not msg:
            break
        eps = unpack(msg)
        t = time.perf_counter()
        error = None
        try:
            store.add_many(eps)
            done = eps
        except EpisodeError as exc:  # keep the valid ones, report the first bad one
            error = str(exc)
            done = _add_valid(store, eps)
        except Exception as exc:  # disk full, permissions, ...
            error, done = f"{type(exc).__name__}: {exc}", []
        ack = {
            "episodes": len(done),
            "steps": sum(e.num_steps for e in done),
            "batches": len(eps),
            "seconds": time.perf_counter() - t,
            "error": error,
        }
        try:
            conn.send_bytes(json.dumps(ack).encode())
        except (BrokenPipeError, OSError):
            pass
    conn.close()


class ProcessWriter:
    def __init__(self, store: EpisodeStore, interval: float = 0.25):
        self.store, self.interval = store, interval
        self.pending: list[Episode] = []
        self.written_steps = self.written_episodes = self.writes = 0
        self.seconds = 0.0  # time the collecting thread spent packing and sending
        self.child_seconds = 0.0
        self.sent_batches = self.acked_batches = 0
        self.error: str | None = None
        self.last = time.monotonic()
        ctx = mp.get_context("fork")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child, args=(child_conn, str(store.root)), daemon=True, name="dreamlab-episode-writer"
        )
        self.proc.start()
        child_conn.close()

    @staticmethod
    def available() -> bool:
        return "fork" in mp.get_all_start_methods()

    def submit(self, ep: Episode) -> None:
        self.pending.append(ep)
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def _ack(self, raw: bytes) -> None:
        ack = json.loads(raw)
        self.acked_batches += 1
        self.written_episodes += ack["episodes"]
        self.written_steps += ack["steps"]
        self.child_seconds += ack["seconds"]
        self.writes += 1
        if ack["error"] and self.error is None:
            self.error = ack["error"]

    def _drain(self) -> None:
        while self.conn.poll():
            self._ack(self.conn.recv_bytes())
        if self.error is not None:
            raise StoreError(f"{self.store.root}: the episode writer failed: {self.error}")

    def flush(self) -> None:
        if self.pending:
            t = time.perf_counter()
            eps, self.pending = self.pending, []
            self.conn.send_bytes(pack(eps))
            self.sent_batches += 1
            self.seconds += time.perf_counter() - t
        self.last = time.monotonic()
        self._drain()

    def close(self) -> None:
        try:
            if self.pending:
                self.conn.send_bytes(pack(self.pending))
                self.sent_batches += 1
                self.pending = []
            self.conn.send_bytes(b"")
            while self.acked_batches < self.sent_batches:
                if not self.proc.is_alive() and not self.conn.poll():
                    raise StoreError(f"{self.store.root}: the episode writer exited early (code {self.proc.exitcode})")
                if self.conn.poll(0.5):
                    self._ack(self.conn.recv_bytes())
        finally:
            self.proc.join(30)
            self.conn.close()
        if self.error is not None:
            raise StoreError(f"{self.store.root}: the episode writer failed: {self.error}")


def make_writer(store: EpisodeStore, kind: str = "process", interval: float = 0.25) -> InlineWriter | ProcessWriter:
    if kind == "process" and ProcessWriter.available():
        return ProcessWriter(store, interval)
    if kind not in ("process", "inline"):
        raise ValueError(f"writer must be 'process' or 'inline', got {kind!r}")
    return InlineWriter(store, interval)


__all__ = ["InlineWriter", "ProcessWriter", "make_writer", "pack", "unpack"]
