"""bf16-mixed imagination and actor-critic updates agree with fp32; the fp32 path is untouched.

Tolerances: bf16 keeps 8 significant bits, so each matmul output is rounded by at most 2^-9
(~0.2%) relative. Under :func:`~dreamlab.imagination.mixed.mixed` only matmuls run in bf16;
LayerNorms, the GRU state, softmaxes and everything after are fp32, so errors do not compound
through the state: after one step the GRU state (in [-1, 1]) moves by ~4e-3 and stays there over
the horizon. Bounds here are about 10x what the tiny model shows (state 0.05, scalar metrics 2%,
gradient cosine 0.99); a path that left the state or the losses in bf16, or dropped the fp32
outputs, fails them or the dtype checks.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F

from dreamlab.cli import main
from dreamlab.data.sampling import SequenceSampler
from dreamlab.imagination.dreamer import DreamerConfig, DreamerLearner
from dreamlab.imagination.grpo import GRPOConfig, GRPOTrainer, ObsActor, dream_env_factory
from dreamlab.imagination.mixed import mixed
from dreamlab.imagination.verifiers import get_verifier
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.model import WorldModel


def _pair(feature_dim: int, space: gym.Space, cfg: DreamerConfig) -> tuple[DreamerLearner, DreamerLearner]:
    torch.manual_seed(1)
    fp32 = DreamerLearner(feature_dim, space, cfg, precision="32")
    bf16 = DreamerLearner(feature_dim, space, cfg, precision="bf16-mixed")
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def _grads(learner: DreamerLearner) -> tuple[torch.Tensor, torch.Tensor]:
    flat = [torch.cat([p.grad.reshape(-1) for p in m.parameters()]) for m in (learner.actor, learner.critic)]
    return flat[0], flat[1]


def _run(learner: DreamerLearner, wm, starts, cont) -> tuple[dict, dict]:
    torch.manual_seed(5)
    roll = learner.imagine(wm, starts, grad=False)
    torch.manual_seed(5)
    return roll, learner.train_step(wm, starts, cont)


def test_bf16_mixed_imagination_and_update_agree_with_fp32(tiny_dream: dict) -> None:
    wm = tiny_dream["wm"]
    cfg = DreamerConfig(hidden=32, max_starts=64, horizon=8)
    fp32, bf16 = _pair(wm.feature_dim, wm.action_space, cfg)
    batch = SequenceSampler(tiny_dream["episodes"], wm.codec, 16, seed=3).sample(4)
    starts, cont = fp32.starts_from_batch(wm, batch)
    roll32, m32 = _run(fp32, wm, starts, cont)
    roll16, m16 = _run(bf16, wm, starts, cont)
    # what leaves the rollout is fp32, and bf16 really ran (the numbers are not bit-identical)
    assert all(v.dtype == torch.float32 for v in roll16.values())
    assert (roll16["feat"] - roll32["feat"]).abs().max() > 0
    # the same random draws pick the same actions and latent classes on almost every row ...
    deter = wm.cfg.deter
    same = (roll16["action"] == roll32["action"]).all(-1).all(0)  # (N,)
    same &= (roll16["feat"][..., deter:] == roll32["feat"][..., deter:]).all(-1).all(0)
    assert same.float().mean() >= 0.8
    # ... and along those the GRU state and the rewards stay close over the whole horizon
    assert (roll16["feat"][:, same, :deter] - roll32["feat"][:, same, :deter]).abs().max() < 0.05
    assert (roll16["reward"][:, same] - roll32["reward"][:, same]).abs().max() < 0.05
    for key in ("return", "reward", "cont", "entropy", "critic_loss", "actor_loss", "ret_scale"):
        assert m16[key] == pytest.approx(m32[key], rel=0.02, abs=1e-3), key
    for g32, g16 in zip(_grads(fp32), _grads(bf16)):
        assert F.cosine_similarity(g32, g16, 0) > 0.99
    # weights and Adam states never left fp32
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}
    states = [*bf16.actor_opt.state.values(), *bf16.critic_opt.state.values()]
    assert states and all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in states)


def test_bf16_mixed_reparameterised_update_backpropagates_through_the_world_model() -> None:
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    wm = WorldModel(preset("tiny", deter=32, hidden=32, groups=4, classes=4), env.observation_space, env.action_space)
    torch.nn.init.normal_(wm.reward_head.head.weight, std=0.1)  # a reward that depends on the state
    wm.eval()
    cfg = DreamerConfig(hidden=32, max_starts=64, horizon=5)
    fp32, bf16 = _pair(wm.feature_dim, wm.action_space, cfg)
    start = {"deter": torch.randn(64, 32) * 0.3, "stoch": F.one_hot(torch.randint(0, 4, (64, 4)), 4).float()}
    start["logits"] = torch.log(start["stoch"] * 0.96 + 0.01)
    cont = torch.ones(64)
    rolls, metrics = [], []
    for learner in (fp32, bf16):
        torch.manual_seed(5)
        rolls.append(learner.imagine(wm, start, grad=True))  # the graph kept: reparameterised actions
        metrics.append(_run(learner, wm, start, cont)[1])
    (r32, r16), (m32, m16) = rolls, metrics
    same = (r16["feat"][..., 32:] == r32["feat"][..., 32:]).all(-1).all(0)  # rows with the same latent classes
    assert same.float().mean() >= 0.8
    assert (r16["feat"][:, same, :32] - r32["feat"][:, same, :32]).abs().max() < 0.05
    assert (r16["action"][:, same] - r32["action"][:, same]).abs().max() < 0.05  # actions in [-2, 2]
    # rewards: symexp of an expectation over bins in [-20, 20] amplifies the bf16 rounding
    assert (r16["reward"][:, same] - r32["reward"][:, same]).abs().max() < 0.1
    assert r16["entropy"].dtype == torch.float32
    a32, _ = _grads(fp32)
    a16, _ = _grads(bf16)
    assert torch.isfinite(a16).all() and a16.abs().sum() > 0
    assert F.cosine_similarity(a32, a16, 0) > 0.99
    for key in ("critic_loss", "entropy", "cont"):
        assert m16[key] == pytest.approx(m32[key], rel=0.02), key
    assert not any(p.grad is not None for p in wm.parameters())  # the world model stayed frozen


def test_mixed_is_a_no_op_for_fp32_and_leaves_no_hooks(tiny_dream: dict) -> None:
    wm = tiny_dream["wm"]
    state = {k: v[:8] for k, v in wm.initial(8).items()}
    act = F.one_hot(torch.arange(8) % 2, 2).float()
    with torch.no_grad():
        plain = wm.img_step(state, act, member=0, mode=True)
        with mixed("32", "cpu", wm):
            same = wm.img_step(state, act, member=0, mode=True)
        with mixed("bf16-mixed", "cpu", wm):
            low = wm.img_step(state, act, member=0, mode=True)
            assert torch.is_autocast_enabled("cpu")
        after = wm.img_step(state, act, member=0, mode=True)
    assert not torch.is_autocast_enabled("cpu")
    assert all(torch.equal(plain[k], same[k]) and torch.equal(plain[k], after[k]) for k in plain)
    assert {v.dtype for v in low.values()} == {torch.float32}  # the GRU state came back in fp32
    assert (low["deter"] - plain["deter"]).abs().max() < 0.05
    assert not any(m._forward_hooks for m in wm.modules())


def test_grpo_iteration_under_bf16_mixed_matches_fp32(tiny_dream: dict) -> None:
    wm, episodes = tiny_dream["wm"], tiny_dream["episodes"]
    verifier = get_verifier("CartPole-v1")
    logs, moves = [], []
    for precision in ("32", "bf16-mixed"):
        torch.manual_seed(0)
        cfg = GRPOConfig(groups=4, group_size=4, horizon=12, epochs=2, hidden=16, layers=1, precision=precision)
        make = dream_env_factory(wm, episodes, verifier, cfg.horizon, penalty=0.1, seed=0)
        agent = ObsActor.from_episodes(episodes, wm.obs_space, wm.action_space, cfg.hidden, cfg.layers)
        before = torch.cat([p.detach().reshape(-1).clone() for p in agent.parameters()])
        trainer = GRPOTrainer(make, agent, verifier, cfg)
        assert trainer.precision == precision
        logs.append(trainer.iteration())
        assert {p.dtype for p in agent.parameters()} == {torch.float32}
        moves.append(torch.cat([p.detach().reshape(-1) for p in agent.parameters()]) - before)
    fp32, bf16 = logs
    assert fp32.kept_groups > 0 and moves[0].abs().sum() > 0  # an update happened
    # the dreams (policy samples and world-model steps, both mixed) end the same way ...
    assert bf16.imagined_steps == fp32.imagined_steps
    assert bf16.score == pytest.approx(fp32.score, rel=0.02, abs=1e-3)
    # ... and the optimiser moved the policy the same way
    assert F.cosine_similarity(moves[0], moves[1], 0) > 0.95


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--precision", "fp16"], "precision"),
        (["--strategy", "fsdp"], "strategy"),
        (["--devices", "0"], "devices"),
    ],
)
def test_bad_placement_flags_are_one_line_errors(
    tmp_path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    args = ["dream", "--wm", str(tmp_path / "wm.ckpt"), "--logs", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(args + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_grpo_placement_comes_from_the_top_level(tmp_path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("precision: '32'\ngrpo:\n  precision: bf16-mixed\n")
    args = ["dream", "--algo", "grpo", "--wm", str(tmp_path / "wm.ckpt"), "--logs", str(tmp_path / "logs")]
    assert main(args + ["--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert "grpo.precision" in capsys.readouterr().err
