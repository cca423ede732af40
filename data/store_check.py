"""``EpisodeStore.check``: every disagreement between a store's index and its files, changing nothing.

For a version-1 entry the archive ``episodes/NAME`` must exist, validate, and hold the length,
steps and return its entry claims. For chunked entries each chunk is read once: it must exist
and validate as a whole; each entry's ``start``/``length`` must match one of its episodes, which
must validate and hold the entry's steps and return; a chunk holding episodes that no entry
lists is reported too. Files no entry points at (orphans) are listed, valid or not, and the
index's ``steps`` / ``episodes`` totals are compared with its entries. Each problem is one
``(file, why)`` pair; ``why`` names the episode for a chunk's episodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dreamlab.data.chunks import read_chunk
from dreamlab.data.episodes import EpisodeError
from dreamlab.data.store import _entry, problem

if TYPE_CHECKING:
    from dreamlab.data.store import EpisodeStore


def _compare(entry: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    out = [
        f"metadata.json says {key} {entry[key]}, the file holds {actual[key]}"
        for key in ("length", "steps")
        if entry[key] != actual[key]
    ]
    if not np.isclose(entry["return"], actual["return"], rtol=1e-5, atol=1e-6):
        out.append(f"metadata.json says return {entry['return']}, the file holds {actual['return']}")
    return out


def check_store(store: EpisodeStore) -> list[tuple[str, str]]:
    bad: list[tuple[str, str]] = []
    index = store.meta["index"]
    spaces = (store.observation_space, store.action_space)
    by_chunk: dict[str, list[str]] = {}
    for name in store.names():
        entry = index[name]
        if "chunk" in entry:
            by_chunk.setdefault(entry["chunk"], []).append(name)
            continue
        path = store.episode_dir / name
        if not path.exists():
            bad.append((str(path), "listed in metadata.json but missing on disk"))
            continue
        try:
            ep = store.load(name)
        except EpisodeError as exc:
            bad.append((str(path), problem(exc)))
            continue
        bad += [(str(path), why) for why in _compare(entry, _entry(ep))]
    for chunk_name, members in by_chunk.items():
        path = store.chunk_dir / chunk_name
        if not path.exists():
            bad.append((str(path), f"listed in metadata.json ({len(members)} episodes) but missing on disk"))
            continue
        try:
            chunk = read_chunk(path, *spaces)
        except EpisodeError as exc:
            bad.append((str(path), problem(exc)))
            continue
        actual = chunk.entries()
        for name in members:
            entry = index[name]
            try:
                r = chunk.row(entry["start"], entry["length"], name)
            except EpisodeError as exc:
                bad.append((str(path), f"episode {name}: {problem(exc)}"))
                continue
            bad += [(str(path), f"episode {name}: {why}") for why in _compare(entry, actual[r])]
        if len(chunk) != len(members):
            bad.append((str(path), f"holds {len(chunk)} episodes but metadata.json lists {len(members)} in it"))
    for path in store.orphans():
        why = "on disk but not listed in metadata.json (an interrupted write; the next collection adopts it)"
        try:
            if path.parent == store.episode_dir:
                store.load(path.name)
            else:
                chunk = read_chunk(path, *spaces)
                if chunk.bad:
                    r, first = next(iter(chunk.bad.items()))
                    why = f"not listed in metadata.json; its episode {r} is not valid: {problem(first)}"
        except EpisodeError as exc:
            why = f"not listed in metadata.json, and not a valid episode file: {problem(exc)}"
        bad.append((str(path), why))
    meta_path = str(store.root / "metadata.json")
    total = sum(e["steps"] for e in index.values())
    if store.meta["steps"] != total:
        bad.append((meta_path, f"field 'steps' is {store.meta['steps']}, but the index entries sum to {total}"))
    if "episodes" in store.meta and store.meta["episodes"] != len(index):
        bad.append((meta_path, f"field 'episodes' is {store.meta['episodes']}, but the index lists {len(index)}"))
    return bad
