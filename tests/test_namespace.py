"""One import namespace: every package's public names resolve, lazily."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "dreamlab",
    "dreamlab.core",
    "dreamlab.data",
    "dreamlab.worldmodel",
    "dreamlab.policy",
    "dreamlab.imagination",
]


def test_the_face_exports_the_main_types():
    from dreamlab import DreamEnv, EpisodeStore, LLMPolicy, WorldModel

    assert DreamEnv.__module__ == "dreamlab.imagination.dream_env"
    assert (EpisodeStore.__name__, LLMPolicy.__name__, WorldModel.__name__) == (
        "EpisodeStore",
        "LLMPolicy",
        "WorldModel",
    )


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name):
    pkg = importlib.import_module(name)
    assert pkg.__all__ and all(getattr(pkg, n) is not None for n in pkg.__all__)
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pkg.nope


def test_importing_the_packages_imports_no_submodule_until_used():
    code = (
        "import sys, dreamlab, dreamlab.data, dreamlab.imagination; "
        "print(int('torch' in sys.modules), int('dreamlab.imagination.dream_env' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"]
