"""The bottom floor: atomic writes, the shared MLP (and its old checkpoints), manifests, the error base."""

import json

import pytest
import torch
from torch import nn

from dreamlab.core.errors import ConfigError, DreamlabError
from dreamlab.core.io import atomic_path, atomic_write_json, read_manifest
from dreamlab.core.machine import machine_info, run_manifest
from dreamlab.core.nn import MLP, TwoHot, symexp, twohot


def test_atomic_path_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_read_manifest_names_file_and_field(tmp_path):
    p = tmp_path / "agent.json"
    p.write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(
        ValueError, match=r"agent.json: field 'format'/'version' is 'other'/1; expected 'dreamlab-agent'/1"
    ):
        read_manifest(p, "dreamlab-agent", 1)


def test_mlp_loads_weights_saved_as_a_flat_sequential():
    torch.manual_seed(0)
    layers = [nn.Linear(4, 8), nn.LayerNorm(8), nn.SiLU(), nn.Linear(8, 8), nn.LayerNorm(8), nn.SiLU(), nn.Linear(8, 3)]
    old = nn.Sequential(*layers)
    new = MLP(4, 8, 2, 3, bias=True, norm_eps=1e-5)
    new.load_state_dict(old.state_dict())
    x = torch.randn(5, 4)
    assert torch.allclose(new(x), old(x))


def test_twohot_module_and_function_agree_and_decode():
    th = TwoHot(bins=41, limit=5.0)
    x = torch.tensor([-3.0, 0.0, 7.5, 120.0])
    enc = th.encode(x)
    assert torch.allclose(enc, twohot(torch.sign(x) * torch.log1p(x.abs()), th.points))
    assert torch.allclose(enc.sum(-1), torch.ones(4))
    back = symexp((enc * th.points).sum(-1))
    assert torch.allclose(back, x, rtol=1e-4)


def test_manifest_records_command_commit_versions_machine():
    m = run_manifest({"steps": 3}, command="dreamlab quickstart --threads 1")
    assert m["command"] == "dreamlab quickstart --threads 1" and m["config"] == {"steps": 3}
    assert m["packages"]["torch"] and m["machine"]["cpu_count"] >= 1
    assert m["commit"] is None or len(m["commit"].split("-")[0]) == 40
    assert isinstance(machine_info()["amx_bf16"], bool)


def test_error_base_is_a_value_error():
    assert issubclass(DreamlabError, ValueError) and issubclass(ConfigError, DreamlabError)
