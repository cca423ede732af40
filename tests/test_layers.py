"""The house's floors hold: no import runs from a lower floor up to a higher one.

Every ``.py`` file of the installed packages is parsed (imports inside functions included) and
each ``dreamlab.*`` import is checked against the floor plan of ``docs/CONTRACTS.md``:

    core  <-  data  <-  worldmodel, policy  <-  imagination  <-  dreamlab (the face)  <-  benchmarks

``worldmodel`` and ``policy`` share a floor and never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> (folder, floor)
PACKAGES = {
    "dreamlab.core": (ROOT / "dreamlab" / "core", 0),
    "dreamlab.data": (ROOT / "data", 1),
    "dreamlab.worldmodel": (ROOT / "worldmodel", 2),
    "dreamlab.policy": (ROOT / "policy", 2),
    "dreamlab.imagination": (ROOT / "imagination", 3),
    "dreamlab": (ROOT / "dreamlab", 4),
    "dreamlab.benchmarks": (ROOT / "benchmarks", 5),
}
# where a library floor may reach outside the standard library and its own floors
THIRD_PARTY_BOTTOM = {"numpy", "torch", "gymnasium", "einops"}


def package_of(module: str) -> str | None:
    """The floor package a ``dreamlab.*`` module belongs to (longest prefix wins)."""
    best = None
    for name in PACKAGES:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def imports_of(path: Path, own_module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = own_module.split(".")[: -node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if mod == "dreamlab":  # "from dreamlab import x" names a subpackage or the face
                out += [(node.lineno, f"dreamlab.{a.name}") for a in node.names]
    return out


def own_files() -> list[tuple[str, Path, str]]:
    """(package, file, module name) for every source file, each file under its own package only."""
    files = []
    for pkg, (folder, _) in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            module = ".".join([pkg, *parts])
            if package_of(module) == pkg:  # dreamlab/core/x.py belongs to dreamlab.core, not the face
                files.append((pkg, path, module))
    return files


def test_every_package_is_found():
    found = {pkg for pkg, _, _ in own_files()}
    assert found == set(PACKAGES)


def test_no_import_runs_back_up():
    bad = []
    for pkg, path, module in own_files():
        floor = PACKAGES[pkg][1]
        for line, target in imports_of(path, module):
            if not (target == "dreamlab" or target.startswith("dreamlab.")):
                continue
            other = package_of(target)
            if other is None or other == pkg:
                continue
            other_floor = PACKAGES[other][1]
            if other_floor > floor or (other_floor == floor and other != pkg):
                bad.append(
                    f"{path.relative_to(ROOT)}:{line}: {pkg} (floor {floor}) imports {target} (floor {other_floor})"
                )
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def test_library_floors_import_no_face_libraries():
    """core/data/worldmodel/policy/imagination never need the face's or benchmarks' third-party tools."""
    face_only = {"matplotlib", "stable_baselines3", "yaml"}
    bad = []
    for pkg, path, module in own_files():
        if PACKAGES[pkg][1] > 3:
            continue
        for line, target in imports_of(path, module):
            if target.split(".")[0] in face_only:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert not bad, "library floors importing face-only packages:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The rule is not vacuous: an upward import in a data file is caught."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from dreamlab.imagination.dream_env import DreamEnv\n")
    ((line, target),) = imports_of(f, "dreamlab.data.x")
    assert (line, target) == (2, "dreamlab.imagination.dream_env")
    assert PACKAGES[package_of(target)][1] > PACKAGES["dreamlab.data"][1]
