"""benchmarks.cycle_targets: summaries and merging per-seed result files."""

from __future__ import annotations

import json

import pytest

from dreamlab.benchmarks.cycle_targets import merge_records, summarise


def _rows(base: float, finals: list[float], teacher: list[float]) -> list[dict]:
    rows = [{"round": "base", "real_steps": 0, "llm_real": base}]
    for r, (llm, t) in enumerate(zip(finals, teacher)):
        rows.append({"round": r, "real_steps": 2000 * (r + 1), "llm_real": llm, "teacher_real": t})
    return rows


def _record(variant: str, seed: str, rows: list[dict], **cfg) -> dict:
    return {
        "benchmark": "cycle_targets",
        "env_id": "CartPole-v1",
        "runs": {variant: {seed: rows}},
        "configs": {variant: {"out": f"/w/{seed}", "seed": int(seed), "llm": "", "dream_steps": 1000, **cfg}},
        "run_stage_minutes": {variant: {seed: 1.0}},
        "machine": {"cpu_count": 2},
    }


def test_summary_gains_and_no_opsd_uses_the_teacher():
    runs = {
        "full": {
            "0": _rows(10, [100, 300, 460], [90, 200, 500]),
            "1": _rows(20, [50, 60, 440], [0, 0, 0]),
            "2": _rows(30, [90, 200, 470], [0, 0, 0]),
        },
        "no-opsd": {"0": _rows(10, [0, 0, 0], [90, 200, 480])},
    }
    s = summarise(runs, goal=450)
    assert s["full"]["finals"] == [460, 440, 470] and s["full"]["final_median"] == 460 and s["full"]["met"]
    assert s["full"]["gain_per_round"][0] == [90, 200, 160]
    assert s["no-opsd"]["finals"] == [480] and s["no-opsd"]["gain_per_round"][0] == [80, 110, 280]


def test_merge_joins_seeds_and_refuses_collisions_and_other_settings(tmp_path):
    paths = []
    for seed, final in (("0", 300.0), ("1", 500.0), ("2", 100.0)):
        p = tmp_path / f"s{seed}.json"
        p.write_text(json.dumps(_record("full", seed, _rows(10, [50, 100, final], [1, 2, 3]))))
        paths.append(p)
    rec = merge_records(paths, goal=450)
    assert sorted(rec["runs"]["full"]) == ["0", "1", "2"]
    assert rec["summary"]["full"]["final_median"] == 300 and not rec["summary"]["full"]["met"]
    assert rec["merged_from"] == ["s0.json", "s1.json", "s2.json"]
    merged = tmp_path / "merged.json"  # re-merging a merged file keeps the original sources
    merged.write_text(json.dumps(rec))
    assert merge_records([merged], goal=450)["merged_from"] == rec["merged_from"]
    with pytest.raises(SystemExit, match="seed 0 is already"):
        merge_records([paths[0], paths[0]], goal=450)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_record("full", "3", _rows(10, [1, 2, 3], [1, 2, 3]), dream_steps=400)))
    with pytest.raises(SystemExit, match="dream_steps"):
        merge_records([paths[0], other], goal=450)
    bad = tmp_path / "bad.json"
    bad.write_text("{truncated")
    with pytest.raises(SystemExit, match="bad.json"):
        merge_records([bad], goal=450)
