"""Episode writers for the collector: inline, or in a separate writer process.

Both take each finished episode with ``submit`` and write it as its own archive at once (a
temporary file renamed into place when complete, :meth:`EpisodeStore.write_archive`), so a kill
(even SIGKILL) loses only the episodes still in flight in the envs. The index in
``metadata.json`` is updated for the archives written so far at the first episode end at least
``interval`` seconds after the previous update (one disk flush and one index rewrite per batch),
and by ``close``; archives renamed in but not yet indexed when a process is killed are adopted
by the next collection into the store (:meth:`EpisodeStore.adopt_orphans`).

* :class:`InlineWriter` writes in the calling thread (a writer *thread* would fight the stepping
  loop for the GIL on every I/O call, which measured slower than writing inline).
* :class:`ProcessWriter` sends each episode, as it ends, to a forked child process over a pipe,
  so compressing and writing archives runs on another core while the parent keeps stepping.
  Episodes travel as raw array bytes plus a JSON header (no pickle). The child ignores SIGINT:
  on Ctrl-C the parent's ``close`` still sends every finished episode (SIGTERM too). The child holds no copy
  of the parent's end of the pipe, so when the parent dies (however) it reads end-of-file, writes
  and indexes every episode it received, and exits: it never outlives its parent.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from typing import Any

import numpy as np

from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.store import EpisodeStore, StoreError


class InlineWriter:
    def __init__(self, store: EpisodeStore, interval: float = 0.25):
        self.store, self.interval = store, interval
        self.unindexed: list[tuple[str, dict[str, Any]]] = []
        self.written_steps = self.written_episodes = self.writes = 0
        self.seconds = 0.0  # time the collecting thread spent writing
        self.last = time.monotonic()

    def submit(self, ep: Episode) -> None:
        t = time.perf_counter()
        try:
            self.unindexed.append(self.store.write_archive(ep))
        finally:
            self.seconds += time.perf_counter() - t
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.unindexed:
            t = time.perf_counter()
            batch, self.unindexed = self.unindexed, []
            try:
                self.store.index_archives(batch)
            finally:
                self.seconds += time.perf_counter() - t
            self.written_episodes += len(batch)
            self.written_steps += sum(int(e["steps"]) for _, e in batch)
            self.writes += 1
        self.last = time.monotonic()

    def close(self) -> None:
        self.flush()


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


def _child(conn: Any, parent_end: Any, root: str, interval: float) -> None:
    parent_end.close()  # else the pipe never reports end-of-file when the parent dies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop (and a signal to the
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # whole process group still lets the child finish)
    ppid = os.getppid()
    store = EpisodeStore(root)
    done = False
    while not done:
        written: list[tuple[str, dict[str, Any]]] = []
        messages, error, deadline, t = 0, None, None, time.perf_counter()
        while True:  # one batch: archives written as they arrive, indexed after `interval`
            wait = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready = conn.poll(wait)
                msg = conn.recv_bytes() if ready else None
            except (EOFError, OSError):
                done = True
                break
            if msg is None:
                if deadline is not None:
                    break
                if os.getppid() != ppid:  # orphaned without end-of-file: stop
                    done = True
                    break
                continue
            if not msg:
                done = True
                break
            if deadline is None:
                deadline, t = time.monotonic() + interval, time.perf_counter()
            messages += 1
            try:
                for ep in unpack(msg):
                    written.append(store.write_archive(ep))
            except EpisodeError as exc:  # keep the valid ones, report the first bad one
                error = error or str(exc)
            except Exception as exc:  # disk full, permissions, ...
                error = error or f"{type(exc).__name__}: {exc}"
        if not messages:
            continue
        try:
            store.index_archives(written)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            error, written = error or f"{type(exc).__name__}: {exc}", []
        ack = {
            "episodes": len(written),
            "steps": sum(int(e["steps"]) for _, e in written),
            "messages": messages,
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
        self.written_steps = self.written_episodes = self.writes = 0
        self.seconds = 0.0  # time the collecting thread spent packing and sending
        self.child_seconds = 0.0
        self.sent_batches = self.acked_batches = 0
        self.error: str | None = None
        ctx = mp.get_context("fork")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child,
            args=(child_conn, self.conn, str(store.root), interval),
            daemon=True,
            name="dreamlab-episode-writer",
        )
        self.proc.start()
        child_conn.close()

    @staticmethod
    def available() -> bool:
        return "fork" in mp.get_all_start_methods()

    def submit(self, ep: Episode) -> None:
        t = time.perf_counter()
        self.conn.send_bytes(pack([ep]))
        self.sent_batches += 1
        self.seconds += time.perf_counter() - t
        self._drain()

    def _ack(self, raw: bytes) -> None:
        ack = json.loads(raw)
        self.acked_batches += ack["messages"]
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
        self._drain()

    def close(self) -> None:
        try:
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
