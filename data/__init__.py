"""Episodes on disk: the convention, validation, the store, importers/exporters, collection, sampling."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Episode": "dreamlab.data.episodes",
    "EpisodeError": "dreamlab.data.episodes",
    "EpisodeStore": "dreamlab.data.store",
    "StoreError": "dreamlab.data.store",
    "ActionCodec": "dreamlab.data.spaces",
    "SpaceError": "dreamlab.data.spaces",
    "space_to_json": "dreamlab.data.spaces",
    "space_from_json": "dreamlab.data.spaces",
    "FormatError": "dreamlab.data.formats",
    "read_jsonl": "dreamlab.data.formats",
    "write_jsonl": "dreamlab.data.formats",
    "read_minari": "dreamlab.data.formats",
    "export_minari": "dreamlab.data.formats",
    "CollectConfig": "dreamlab.data.collect",
    "CollectSummary": "dreamlab.data.collect",
    "EnvSpecError": "dreamlab.data.collect",
    "make_env": "dreamlab.data.collect",
    "HeuristicPolicy": "dreamlab.data.behaviour",
    "PolicyLoadError": "dreamlab.data.behaviour",
    "make_behaviour": "dreamlab.data.behaviour",
    "load_policy": "dreamlab.data.behaviour",
    "SequenceSampler": "dreamlab.data.sampling",
    "EpisodeDataModule": "dreamlab.data.sampling",
    "split_names": "dreamlab.data.sampling",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
