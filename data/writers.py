"""Episode writers for the collector: a forked writer process (the default), or inline.

Both take each finished episode as it ends (``submit_steps``: the collector's buffer slices;
``submit``: an :class:`Episode`) and group the episodes of about ``interval`` seconds (0.25) into
one chunk (:mod:`dreamlab.data.chunks`): validated in a few vectorised passes, written to a
temporary file, flushed to disk and renamed in whole. The index in ``metadata.json`` is
updated for the chunks written so far at most every ``interval`` seconds, and less often once
rewriting it costs more than a twentieth of the time since the last rewrite (a store of many
thousand episodes), always at ``close``. A chunk renamed in but not yet indexed when a process
dies is adopted under the same names by the next collection (:meth:`EpisodeStore.adopt_orphans`).

* :class:`ProcessWriter` sends each episode down a pipe to a forked child the moment it ends
  (raw bytes, no pickle), so a SIGKILL of the collecting process loses only the episodes still
  in flight in the envs: the child reads end-of-file when its parent dies, writes and indexes
  everything it received, and exits. (A kill of the child itself loses what it held, at most
  ``interval`` seconds of episodes.) Compression, validation and disk flushes run on its core.
* :class:`InlineWriter` builds and writes the chunks in the calling thread; Ctrl-C, SIGTERM and
  errors still write every finished episode (the collector closes it in ``finally``), but a
  SIGKILL also loses the episodes finished since its last chunk (at most ``interval`` seconds).
  It is the fallback where ``fork`` is unavailable.
"""

from __future__ import annotations

import fcntl
import json
import math
import multiprocessing as mp
import os
import signal
import struct
import threading
import time
from typing import Any

import numpy as np

from dreamlab.data.chunks import ChunkBuilder, select, validate_chunk
from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.store import EpisodeStore, Record, StoreError

SOURCE = "<collected episodes>"
_STEPS = struct.Struct("<cq?")  # b"T", transitions N, terminated; then obs, action, reward bytes


class _Chunks:
    """What both writers share: the chunk being gathered, writing it, and pacing the index."""

    def __init__(self, store: EpisodeStore, interval: float):
        self.store, self.interval = store, interval
        self.obs_dtype = np.dtype(store.observation_space.dtype or np.float32)
        self.act_dtype = np.dtype(store.action_space.dtype or np.float32)
        self.builder = ChunkBuilder(self.obs_dtype)
        self.unindexed: list[Record] = []
        self.indexed_episodes = self.indexed_steps = self.index_writes = 0
        self.last_index, self.index_cost = time.monotonic(), 0.0

    def new_builder(self) -> ChunkBuilder:
        old, self.builder = self.builder, ChunkBuilder(self.obs_dtype)
        return old

    def write(self, builder: ChunkBuilder) -> EpisodeError | None:
        """Write the builder's episodes as a chunk, leaving out invalid ones; returns the first problem."""
        if not len(builder):
            return None
        arrs = builder.build()
        bad = validate_chunk(arrs, self.store.observation_space, self.store.action_space, SOURCE)
        if bad:
            arrs = select(arrs, [r for r in range(len(builder)) if r not in bad])
        if len(arrs["offsets"]) > 1:
            self.unindexed += self.store.write_chunk(arrs)
        return next(iter(bad.values())) if bad else None

    def index_due(self) -> float:
        """When the index may be rewritten next (monotonic time)."""
        return self.last_index + max(self.interval, 19 * self.index_cost)

    def index(self) -> None:
        if not self.unindexed:
            return
        t = time.monotonic()
        batch, self.unindexed = self.unindexed, []
        self.store.index_records(batch)
        self.last_index = time.monotonic()
        self.index_cost = self.last_index - t
        self.indexed_episodes += len(batch)
        self.indexed_steps += sum(int(e["steps"]) for _, e in batch)
        self.index_writes += 1


class InlineWriter:
    def __init__(self, store: EpisodeStore, interval: float = 0.25):
        self.store, self.interval = store, interval
        self.chunks = _Chunks(store, interval)
        self.seconds = 0.0  # time the collecting thread spent writing

    @property
    def written_episodes(self) -> int:
        return self.chunks.indexed_episodes

    @property
    def written_steps(self) -> int:
        return self.chunks.indexed_steps

    @property
    def writes(self) -> int:
        return self.chunks.index_writes

    def submit(self, ep: Episode) -> None:
        ep.validate(self.store.observation_space, self.store.action_space, source=SOURCE)
        if not self.chunks.builder.accepts(ep.action):
            self.flush()
        self.chunks.builder.add_episode(ep)
        self._maybe_flush()

    def submit_steps(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: bool) -> None:
        """One finished episode from buffer slices (copied): N + 1 observations, N actions, N rewards."""
        c = self.chunks
        c.builder.add_steps(
            np.array(obs, c.obs_dtype), np.array(action, c.act_dtype), np.array(reward, np.float64), terminated
        )
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        b = self.chunks.builder
        if b.full() or time.monotonic() - b.since >= self.interval:
            self.flush()

    def flush(self, index: bool = False) -> None:
        """Write the episodes gathered so far as a chunk; index when due (or ``index``)."""
        t = time.perf_counter()
        try:
            problem = self.chunks.write(self.chunks.new_builder())
            if index or time.monotonic() >= self.chunks.index_due():
                self.chunks.index()
        finally:
            self.seconds += time.perf_counter() - t
        if problem is not None:
            raise problem

    def close(self) -> None:
        self.flush(index=True)


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


def unpack(msg: bytes | memoryview) -> list[Episode]:
    n = int.from_bytes(msg[:8], "little")
    header = json.loads(bytes(msg[8 : 8 + n]))
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


class _Child:
    """The writer process: a receiving loop (main thread) and a chunk-writing thread."""

    def __init__(self, store: EpisodeStore, interval: float, acks: Any):
        self.chunks = _Chunks(store, interval)
        self.acks, self.interval = acks, interval
        self.cond = threading.Condition()
        self.done = False
        self.ready: list[ChunkBuilder] = []  # full builders waiting for the writer
        self.error: str | None = None
        self.seconds = 0.0
        space = store.observation_space
        self.obs_shape = tuple(space.shape or ())
        self.act_shape = tuple(store.action_space.shape or ())
        self.obs_row = self.chunks.obs_dtype.itemsize * math.prod(self.obs_shape)
        self.act_row = self.chunks.act_dtype.itemsize * math.prod(self.act_shape)

    def _fail(self, msg: str) -> None:
        with self.cond:
            self.error = self.error or msg

    def receive(self, msg: bytes | memoryview) -> None:
        """One message from the parent: episodes as buffer slices (b"T") or packed (b"E")."""
        c = self.chunks
        try:
            if msg[:1] == b"E":
                eps = unpack(memoryview(msg)[1:])
                for ep in eps:
                    ep.validate(c.store.observation_space, c.store.action_space, source=SOURCE)
                pieces: list[Any] = eps
            else:
                _, n, term = _STEPS.unpack_from(msg)
                o, a = _STEPS.size, _STEPS.size + (n + 1) * self.obs_row
                r = a + n * self.act_row
                if msg[:1] != b"T" or n < 0 or len(msg) != r + 8 * n:
                    raise StoreError("writer message: not an episode of this store's spaces")
                pieces = [
                    (
                        np.frombuffer(msg, c.obs_dtype, (n + 1) * math.prod(self.obs_shape), o).reshape(
                            (n + 1, *self.obs_shape)
                        ),
                        np.frombuffer(msg, c.act_dtype, n * math.prod(self.act_shape), a).reshape((n, *self.act_shape)),
                        np.frombuffer(msg, np.float64, n, r),
                        term,
                    )
                ]
        except (EpisodeError, StoreError, ValueError, struct.error) as exc:
            self._fail(str(exc))
            return
        with self.cond:
            for p in pieces:
                b = c.builder
                if len(b) and (b.full() or (isinstance(p, Episode) and not b.accepts(p.action))):
                    self.ready.append(c.new_builder())
                    self.cond.notify()
                if isinstance(p, Episode):
                    c.builder.add_episode(p)
                else:
                    c.builder.add_steps(*p)
                if len(c.builder) == 1:
                    self.cond.notify()  # the writer now waits for this chunk's deadline

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify()

    def _ack(self, final: bool) -> None:
        c = self.chunks
        ack = {
            "episodes": c.indexed_episodes,
            "steps": c.indexed_steps,
            "writes": c.index_writes,
            "seconds": self.seconds,
            "error": self.error,
            "final": final,
        }
        try:
            self.acks.send_bytes(json.dumps(ack).encode())
        except (BrokenPipeError, OSError):
            pass

    def _wait(self) -> tuple[list[ChunkBuilder], bool]:
        """Block until there is something to do; returns (builders to write, finishing)."""
        c = self.chunks
        with self.cond:
            while True:
                now = time.monotonic()
                b = c.builder
                take = self.done or (len(b) > 0 and (b.full() or now >= b.since + self.interval))
                if take or self.ready or (c.unindexed and now >= c.index_due()):
                    break
                due = [c.index_due()] if c.unindexed else []
                if len(b):
                    due.append(b.since + self.interval)
                self.cond.wait(min(due) - now if due else None)
            builders, self.ready = self.ready, []
            if take:
                builders.append(c.new_builder())
            return builders, self.done

    def run_writer(self) -> None:
        c = self.chunks
        finishing = False
        while not finishing:
            builders, finishing = self._wait()
            t = time.perf_counter()
            try:
                for b in builders:
                    problem = c.write(b)
                    if problem is not None:
                        self._fail(str(problem))
                if c.unindexed and (finishing or time.monotonic() >= c.index_due()):
                    c.index()
                    self.seconds += time.perf_counter() - t
                    self._ack(final=False)
                    t = time.perf_counter()
            except Exception as exc:  # noqa: BLE001 - disk full, permissions, ...: reported to the parent
                self._fail(f"{type(exc).__name__}: {exc}")
            self.seconds += time.perf_counter() - t
        self._ack(final=True)


FRAME = struct.Struct("<Q")  # each message on the data pipe: its length, then its bytes; length 0 ends


def _read_available(fd: int, buf: bytearray) -> bool:
    """Append what the non-blocking pipe ``fd`` holds to ``buf``; True at end-of-file."""
    while True:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return False
        if not data:
            return True
        buf += data


def _child(fd: int, acks: Any, parent_fd: int, parent_acks: Any, root: str, interval: float, every: float) -> None:
    """The writer process. It does not wait on the pipe (a wake-up per episode would preempt the
    collector on a busy machine): it sleeps ``every`` seconds, then reads everything queued in the
    (enlarged) pipe at once and splits it into messages. What the parent wrote stays in the pipe
    when the parent dies; only a message cut off by the kill is dropped."""
    os.close(parent_fd)  # else the pipe never reports end-of-file when the parent dies
    parent_acks.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop (and a signal to the
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # whole process group still lets the child finish)
    ppid = os.getppid()
    child = _Child(EpisodeStore(root), interval, acks)
    writer = threading.Thread(target=child.run_writer, name="chunk-writer", daemon=True)
    writer.start()
    os.set_blocking(fd, False)
    buf = bytearray()
    try:
        done = False
        while not done:
            time.sleep(every)
            eof = _read_available(fd, buf)
            data = memoryview(bytes(buf))  # the messages' arrays keep this alive, not the buffer
            pos = 0
            while len(data) - pos >= FRAME.size:
                (n,) = FRAME.unpack_from(data, pos)
                if len(data) - pos - FRAME.size < n:
                    break
                pos += FRAME.size
                if n == 0:  # the parent's close
                    done = True
                    break
                child.receive(data[pos : pos + n])
                pos += n
            del buf[:pos]
            done = done or eof or os.getppid() != ppid  # orphaned without end-of-file: stop
    except OSError:
        pass
    finally:
        child.finish()
        writer.join()
        os.close(fd)
        acks.close()


def _grow_pipe(fd: int, size: int = 1 << 20) -> int:
    """A larger pipe buffer (Linux), so the child can drain it in bulk; returns its size in bytes."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (AttributeError, OSError):
        return 1 << 16


class ProcessWriter:
    def __init__(self, store: EpisodeStore, interval: float = 0.25):
        self.store, self.interval = store, interval
        self.written_steps = self.written_episodes = self.writes = 0
        self.seconds = 0.0  # time the collecting thread spent packing and sending
        self.child_seconds = 0.0
        self.sent = 0
        self.final = False
        self.error: str | None = None
        self.obs_dtype = np.dtype(store.observation_space.dtype or np.float32)
        self.act_dtype = np.dtype(store.action_space.dtype or np.float32)
        ctx = mp.get_context("fork")
        child_in, self.fd = os.pipe()
        every = 0.02 if _grow_pipe(self.fd) >= 1 << 20 else 0.005  # a 64 KiB pipe fills in ~30 ms
        self.acks, child_acks = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_child,
            args=(child_in, child_acks, self.fd, self.acks, str(store.root), interval, every),
            daemon=True,
            name="dreamlab-episode-writer",
        )
        self.proc.start()
        os.close(child_in)
        child_acks.close()
        self._last_drain = time.monotonic()

    @staticmethod
    def available() -> bool:
        return "fork" in mp.get_all_start_methods()

    def _send(self, msg: bytes) -> None:
        view = memoryview(FRAME.pack(len(msg)) + msg)
        while view:  # a blocking pipe: partial writes only when a signal interrupts
            view = view[os.write(self.fd, view) :]
        self.sent += 1
        now = time.monotonic()
        if now - self._last_drain > 0.1:
            self._last_drain = now
            self._drain()

    def submit(self, ep: Episode) -> None:
        t = time.perf_counter()
        self._send(b"E" + pack([ep]))
        self.seconds += time.perf_counter() - t

    def submit_steps(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: bool) -> None:
        """One finished episode from buffer slices: N + 1 observations, N actions, N rewards."""
        t = time.perf_counter()
        o = np.ascontiguousarray(obs, self.obs_dtype)
        a = np.ascontiguousarray(action, self.act_dtype)
        r = np.ascontiguousarray(reward, np.float64)
        self._send(b"".join((_STEPS.pack(b"T", len(a), bool(terminated)), o.tobytes(), a.tobytes(), r.tobytes())))
        self.seconds += time.perf_counter() - t

    def _ack(self, raw: bytes) -> None:
        ack = json.loads(raw)
        self.written_episodes, self.written_steps = ack["episodes"], ack["steps"]
        self.writes, self.child_seconds = ack["writes"], ack["seconds"]
        self.final = self.final or ack["final"]
        if ack["error"] and self.error is None:
            self.error = ack["error"]

    def _drain(self) -> None:
        while self.acks.poll():
            self._ack(self.acks.recv_bytes())
        if self.error is not None:
            raise StoreError(f"{self.store.root}: the episode writer failed: {self.error}")

    def flush(self) -> None:
        self._drain()

    def close(self) -> None:
        try:
            try:
                os.write(self.fd, FRAME.pack(0))
            except OSError:  # the child is gone: reported below
                pass
            while not self.final:
                try:
                    if self.acks.poll(0.5):
                        self._ack(self.acks.recv_bytes())
                    elif not self.proc.is_alive():
                        raise EOFError
                except EOFError:
                    raise StoreError(
                        f"{self.store.root}: the episode writer exited early (code {self.proc.exitcode})"
                    ) from None
        finally:
            self.proc.join(30)
            os.close(self.fd)
            self.acks.close()
        if self.error is not None:
            raise StoreError(f"{self.store.root}: the episode writer failed: {self.error}")


def make_writer(store: EpisodeStore, kind: str = "process", interval: float = 0.25) -> InlineWriter | ProcessWriter:
    if kind == "process" and ProcessWriter.available():
        return ProcessWriter(store, interval)
    if kind not in ("process", "inline"):
        raise ValueError(f"writer must be 'process' or 'inline', got {kind!r}")
    return InlineWriter(store, interval)


__all__ = ["InlineWriter", "ProcessWriter", "make_writer", "pack", "unpack"]
