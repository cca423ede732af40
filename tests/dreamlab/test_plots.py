"""The plot commands read benchmark outputs, write PNG and PDF, and refuse bad input clearly."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.plots import spearman


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_spearman_matches_rank_definition():
    x = [1, 2, 3, 4, 5]
    assert spearman(x, [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman(x, [1, 3, 2, 5, 4]) == pytest.approx(0.8)
    assert np.isnan(spearman([1, 2], [1, 2]))


@pytest.mark.parametrize("kind", ["transfer", "curves", "openloop", "distill"])
def test_plot_kinds_write_png_and_pdf(tmp_path, kind):
    if kind == "transfer":
        _csv(
            tmp_path / "transfer.csv",
            [{"real_return": r, "dream_return": r * 1.1, "label": "a"} for r in (10, 50, 200)],
        )
    elif kind == "curves":
        _csv(
            tmp_path / "curves.csv",
            [
                {"real_steps": s, "real_return": s / 10 + seed, "seed": seed, "label": "online"}
                for seed in (0, 1)
                for s in (1000, 2000, 3000)
            ],
        )
    elif kind == "openloop":
        (tmp_path / "openloop.json").write_text(
            json.dumps({"context": 8, "nmse": [0.01, 0.02, 0.05], "nmse_copy_last": [0.1, 0.3, 0.6]})
        )
    else:
        _csv(
            tmp_path / "distill.csv",
            [
                {"method": m, "seed": 0, "labelled_tokens": t, "real_return": t / 3}
                for m in ("opsd", "sft")
                for t in (100, 200, 300)
            ]
            + [{"method": "ref:teacher", "seed": 0, "labelled_tokens": 0, "real_return": 500}],
        )
    assert main(["plot", kind, str(tmp_path)]) == 0
    for ext in ("png", "pdf"):
        f = tmp_path / "plots" / f"{kind}.{ext}"
        assert f.exists() and f.stat().st_size > 1000


def test_plot_bad_input_names_file_line_and_column(tmp_path, capsys):
    _csv(tmp_path / "transfer.csv", [{"real_return": 1, "dream_return": 2}, {"real_return": "oops", "dream_return": 3}])
    assert main(["plot", "transfer", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "transfer.csv" in err and "line 3" in err and "real_return" in err
    assert main(["plot", "openloop", str(tmp_path)]) == 2
    assert "openloop.json" in capsys.readouterr().err
