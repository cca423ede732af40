"""One config story: nested dataclasses, one YAML shape, dotted flags, one validate() that names the key."""

import argparse
from dataclasses import dataclass, field

import pytest

from dreamlab.config import add_config_args, config_from_args
from dreamlab.core.errors import ConfigError


@dataclass
class Inner:
    lr: float = 3e-4
    warm_start: bool = True
    name: str = "x"

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")


@dataclass
class Outer:
    steps: int = 10
    envs: tuple[str, ...] = ("a",)
    limit: float | None = None
    progress: bool = True
    dreamer: Inner = field(default_factory=Inner)


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_args(p, Outer)
    return config_from_args(Outer, p.parse_args(argv))


def test_defaults_yaml_then_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("steps: 20\ndreamer:\n  lr: 1.0e-3\n  warm-start: false\nenvs: [b, c]\n")
    cfg = _parse(["--config", str(y), "--dreamer.lr", "5e-4", "--no-progress"])
    assert cfg.steps == 20 and cfg.envs == ("b", "c") and cfg.progress is False
    assert cfg.dreamer.lr == 5e-4 and cfg.dreamer.warm_start is False
    assert _parse(["--dreamer.warm-start", "false"]).dreamer.warm_start is False
    assert _parse(["--dreamer.no-warm-start"]).dreamer.warm_start is False
    assert _parse(["--progress"]).progress is True and _parse([]).limit is None


@pytest.mark.parametrize(
    "text, match",
    [
        ("steps: lots\n", r"c.yaml: key 'steps': expected an integer, got 'lots'"),
        ("dreamer:\n  nope: 1\n", r"c.yaml: unknown key 'dreamer.nope' for Inner"),
        ("dreamer: 3\n", r"c.yaml: dreamer.: expected a mapping"),
        ("progress: 1\n", r"key 'progress': expected true or false"),
        ("- a\n- b\n", r"expected a mapping of config keys"),
        ("steps: [\n", r"c.yaml: not valid YAML"),
        ("dreamer:\n  lr: -1\n", r"c.yaml: dreamer: lr: expected > 0"),
    ],
)
def test_bad_yaml_names_file_key_and_expectation(tmp_path, text, match):
    y = tmp_path / "c.yaml"
    y.write_text(text)
    with pytest.raises(ConfigError, match=match):
        _parse(["--config", str(y)])


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        _parse(["--config", str(tmp_path / "nope.yaml")])


def test_every_command_spells_the_shared_flags_the_same():
    from dreamlab.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        opts = {s for a in p._actions for s in a.option_strings}
        assert not any(o.startswith("--cfg") or "_" in o for o in opts), (name, sorted(opts))
        if "--progress" in opts:
            assert "--no-progress" in opts, name
        metavars = [a.metavar for a in p._actions if a.metavar]
        assert not any(str(m).startswith("CFG") for m in metavars), (name, metavars)
