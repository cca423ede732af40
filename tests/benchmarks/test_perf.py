"""``benchmarks.perf --quick``: every perf_* benchmark runs at tiny sizes and the table has one row
per measurement, each with a measured ceiling and a finite ratio; ``--from-results`` reads the JSONs."""

import json
import math

import pytest

from dreamlab.benchmarks.perf import main


@pytest.mark.slow
def test_perf_quick_builds_table_with_finite_ratios(tmp_path, capsys):
    out = tmp_path / "perf"
    report = main(["--quick", "--out-dir", str(out)])
    saved = json.loads((out / "perf.json").read_text())
    assert saved["rows"] == report["rows"]
    rows = saved["rows"]
    assert {r["source"] for r in rows} == {"perf_data", "perf_worldmodel", "perf_imagination", "perf_llm"}
    assert {r["issue"] for r in rows} == {2, 3, 4, 6, 18}
    for r in rows:
        assert r["ours"] > 0 and math.isfinite(r["ours"]), r
        assert r["ceiling"] is not None and r["ceiling"] > 0, r  # every quick measurement has its ceiling
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        if r["source"] == "perf_worldmodel":  # times: ratio = plain time / our time
            assert math.isclose(r["ratio"], r["ceiling"] / r["ours"], rel_tol=1e-9)
        else:
            assert math.isclose(r["ratio"], r["ours"] / r["ceiling"], rel_tol=1e-9)
        if r["goal"] is not None:
            assert r["goal_met"] == (r["ratio"] >= r["goal"])
    assert saved["machine"]["cpu_count"] >= 1 and saved["machine"]["torch_threads"] == 1
    md = (out / "perf.md").read_text()
    assert md.count("\n| ") == len(rows) + 2  # header, rule, one line per row
    assert all(r["measurement"] in md for r in rows)

    # --from-results reads the JSON files of a results folder (here: the quick run's imagination one)
    (out / "perf_imagination.json").rename(tmp_path / "perf_imagination.json")
    for name, payload in (
        ("data", {"collection": [], "sampling": {"batch_size": 16, "seq_len": 64, "batches_per_s": 5.0}}),
        ("worldmodel", {"results": []}),
        ("llm", {"actions_per_s": {}, "distillation": {}}),
    ):
        (tmp_path / f"perf_{name}.json").write_text(json.dumps(payload))
    capsys.readouterr()
    rep2 = main(["--from-results", "--results", str(tmp_path), "--out-dir", str(tmp_path / "fr")])
    imag = [r for r in rep2["rows"] if r["source"] == "perf_imagination"]
    assert len(imag) == 6 and all(math.isfinite(r["ratio"]) for r in imag)  # fp32, auto, bf16 x rollout, update
    sampling = [r for r in rep2["rows"] if r["source"] == "perf_data"]
    assert len(sampling) == 1 and sampling[0]["ratio"] is None  # an old JSON without a ceiling
