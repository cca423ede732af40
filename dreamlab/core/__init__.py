"""The bottom floor: what every other package shares (imports only numpy, torch, gymnasium)."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DreamlabError": "dreamlab.core.errors",
    "ConfigError": "dreamlab.core.errors",
    "Policy": "dreamlab.core.protocol",
    "DistributionPolicy": "dreamlab.core.protocol",
    "RandomPolicy": "dreamlab.core.protocol",
    "atomic_path": "dreamlab.core.io",
    "atomic_write_bytes": "dreamlab.core.io",
    "atomic_write_text": "dreamlab.core.io",
    "atomic_write_json": "dreamlab.core.io",
    "atomic_torch_save": "dreamlab.core.io",
    "atomic_copy": "dreamlab.core.io",
    "write_csv": "dreamlab.core.io",
    "read_manifest": "dreamlab.core.io",
    "import_attr": "dreamlab.core.imports",
    "check_code_name": "dreamlab.core.imports",
    "safe_torch_load": "dreamlab.core.io",
    "machine_info": "dreamlab.core.machine",
    "git_commit": "dreamlab.core.machine",
    "package_versions": "dreamlab.core.machine",
    "run_manifest": "dreamlab.core.machine",
    "derive_seed": "dreamlab.core.seeding",
    "round_seed": "dreamlab.core.seeding",
    "symlog": "dreamlab.core.nn",
    "symexp": "dreamlab.core.nn",
    "twohot": "dreamlab.core.nn",
    "TwoHot": "dreamlab.core.nn",
    "MLP": "dreamlab.core.nn",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
