"""benchmarks.dream_coverage: the real-env side and the extremes summary."""

from __future__ import annotations

import numpy as np

from dreamlab.benchmarks.dream_coverage import _extremes, real_heuristic


def test_extremes_are_quantiles_of_per_episode_max_and_min():
    traj = np.zeros((3, 2, 1))  # (T, n, d)
    traj[:, 0, 0] = [0.0, 2.0, 1.0]
    traj[:, 1, 0] = [-1.0, 0.0, 4.0]
    ex = _extremes(traj)
    assert ex["max"][0][0] == 2.0 and ex["max"][0][-1] == 4.0  # quantile 0 and 1 over the two episodes
    assert ex["min"][0][0] == -1.0 and ex["min"][0][-1] == 0.0


def test_real_heuristic_reaches_the_mountaincar_goal():
    r = real_heuristic("MountainCarContinuous-v0", n=3, horizon=250, seed=0)
    assert r["success_rate"] == 1.0
    assert r["obs_extremes"]["max"][0][0] >= 0.45  # every episode's highest position passes the goal line
