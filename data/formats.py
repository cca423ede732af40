"""Importers and exporters: JSONL deployment logs, Minari datasets, lists of gymnasium transitions.

JSONL deployment logs
---------------------
One JSON object per line. Each *step line* is one environment transition: the agent saw ``obs``,
took ``action`` and got ``reward``; ``terminated`` / ``truncated`` say whether that transition
ended the episode. Fields:

=================  ========  ==============================================================
key                required  meaning
=================  ========  ==============================================================
``episode``        yes       episode id (string or integer); lines of different episodes may
                             interleave, lines of one episode are in time order
``obs``            yes       the observation the action was taken at (number or nested list)
``action``         yes       the action taken (integer for Discrete spaces, list for Box)
``reward``         yes       the reward for this transition (number)
``terminated``     yes       bool: the task ended with this transition (no value beyond it)
``truncated``      yes       bool: the episode was cut off after this transition
``feedback``       no        user feedback on this transition: +1 / -1 or a score (default 0 =
                             none); it lands on the step after the action, like the reward
``feedback_text``  no        a user's written evaluation of this transition (a string, or null).
                             On a line without ``feedback`` it becomes the thumb (+1 / -1) that the
                             ``label_text`` function of :func:`read_jsonl` gives it (an LLM's
                             reading: :mod:`policy.feedback_labels`); a line with both keeps its
                             ``feedback``. An empty or blank string counts as no text
``info``           no        an object; accepted and ignored
``next_obs``       no        the observation that followed. Give it on the last line of an
                             episode, which is the only way to carry the final observation. On
                             other lines it must equal the next line's ``obs``.
=================  ========  ==============================================================

An optional *header* on the first line, ``{"schema": "dreamlab-jsonl", "version": 1, "env_id":
..., "observation_space": {...}, "action_space": {...}}`` (spaces as in ``data.spaces``), gives the
env and spaces; :func:`write_jsonl` always writes one. Without it the spaces come from ``--env``
(``gym.make``) or are inferred: observations ``Box(-inf, inf)`` float32, actions ``Discrete(max + 1)``
when every action is a scalar integer, else ``Box(-inf, inf)`` float32.

**The final observation.** If the last line of an episode has ``next_obs``, that is the final
observation (exact round trip). If it has none: when the episode *terminated*, the final
observation repeats the last line's ``obs`` (so the terminal flag, reward and feedback are kept;
the decoder sees one approximate step); when it was *truncated* or never ended (the log was cut
off), the last line's outcome is unknown, so that line is dropped and the episode is stored as
truncated. An episode left with no transition is skipped. An episode without a ``terminated`` /
``truncated`` line is stored as truncated. The import summary counts each case, and the written
feedback: ``feedback_text`` (lines with a text), ``feedback_text_labelled`` (turned into thumbs),
``feedback_text_with_thumb`` (their ``feedback`` kept), ``feedback_text_unlabelled`` (no
``label_text`` given: feedback 0) and ``feedback_text_empty``.

Minari
------
:func:`export_minari` writes a local dataset with ``minari.create_dataset_from_buffers`` (feedback
goes into ``infos["feedback"]``, one value per step); :func:`read_minari` reads a local dataset by
id (under ``MINARI_DATASETS_PATH``) or by directory. Both preserve every array exactly. ``minari``
is an optional extra (``dreamlab[offline]``) and is imported only inside these functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.io import atomic_path
from dreamlab.data.episodes import Episode, EpisodeError, check_actions
from dreamlab.data.format_types import FormatError, Logs
from dreamlab.data.spaces import SpaceError, space_from_json, space_to_json

SCHEMA = "dreamlab-jsonl"
STEP_KEYS = ("episode", "obs", "action", "reward", "terminated", "truncated")


# ------------------------------------------------------------------------- gymnasium transitions
def _get(tr: Any, key: str, pos: int) -> Any:
    if isinstance(tr, dict):
        return tr.get(key)
    names = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    return tr[names.index(key)] if key in names and names.index(key) < len(tr) else None


def episodes_from_transitions(
    transitions: Iterable[Any], action_space: gym.Space | None = None, source: str = "<transitions>"
) -> list[Episode]:
    """Group gymnasium transitions into episodes.

    Each transition is a tuple ``(obs, action, reward, next_obs, terminated, truncated)`` or a dict
    with those keys (plus optional ``feedback``). An episode ends at a terminated or truncated
    transition; consecutive transitions of one episode must chain (``next_obs`` of one equals
    ``obs`` of the next), which catches phantom autoreset transitions. A trailing unfinished
    episode is kept as truncated.
    """
    episodes: list[Episode] = []
    obs: list[Any] = []
    acts: list[Any] = []
    rews: list[float] = []
    fbs: list[float] = []
    for i, tr in enumerate(transitions):
        o, a, r, o2 = _get(tr, "obs", 0), _get(tr, "action", 1), _get(tr, "reward", 2), _get(tr, "next_obs", 3)
        term, trunc = bool(_get(tr, "terminated", 4)), bool(_get(tr, "truncated", 5))
        if o is None or a is None or r is None or o2 is None:
            raise FormatError(f"{source}: transition {i}: needs obs, action, reward, next_obs, terminated, truncated")
        if obs and not np.allclose(np.asarray(obs[-1], np.float64), np.asarray(o, np.float64), rtol=1e-6, atol=1e-7):
            raise FormatError(
                f"{source}: transition {i}: obs does not equal the previous transition's next_obs "
                "(a phantom autoreset transition, or a missing terminated/truncated flag)"
            )
        if not obs:
            obs.append(o)
        acts.append(a)
        rews.append(float(r))
        fbs.append(float((tr.get("feedback") if isinstance(tr, dict) else None) or 0.0))
        obs.append(o2)
        if term or trunc:
            episodes.append(Episode.from_transitions(np.asarray(obs), np.asarray(acts), rews, term, fbs, action_space))
            obs, acts, rews, fbs = [], [], [], []
    if acts:
        episodes.append(Episode.from_transitions(np.asarray(obs), np.asarray(acts), rews, False, fbs, action_space))
    return episodes


def episode_to_transitions(ep: Episode) -> list[dict[str, Any]]:
    """The inverse of :func:`episodes_from_transitions` for one episode (dicts in gymnasium order)."""
    n = ep.num_steps
    return [
        {
            "obs": ep.obs[t],
            "action": ep.action[t],
            "reward": float(ep.reward[t + 1]),
            "next_obs": ep.obs[t + 1],
            "terminated": bool(ep.is_terminal[t + 1]),
            "truncated": bool(ep.is_last[t + 1] and not ep.is_terminal[t + 1]),
            "feedback": float(ep.feedback[t + 1]),
        }
        for t in range(n)
    ]


# ------------------------------------------------------------------------------------- JSONL
def _to_json(x: np.ndarray) -> Any:
    return np.asarray(x).tolist()


def write_jsonl(
    episodes: Iterable[Episode],
    path: str | Path,
    env_id: str | None,
    observation_space: gym.Space,
    action_space: gym.Space,
) -> int:
    """Write episodes as JSONL (header + one line per transition, ``next_obs`` on each episode's
    last line); returns the number of step lines. Floats round-trip exactly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(
            json.dumps(
                {
                    "schema": SCHEMA,
                    "version": 1,
                    "env_id": env_id,
                    "observation_space": space_to_json(observation_space),
                    "action_space": space_to_json(action_space),
                }
            )
            + "\n"
        )
        for e, ep in enumerate(episodes):
            n = ep.num_steps
            for t in range(n):
                last = t == n - 1
                rec: dict[str, Any] = {
                    "episode": e,
                    "obs": _to_json(ep.obs[t]),
                    "action": _to_json(ep.action[t]),
                    "reward": float(ep.reward[t + 1]),
                    "terminated": bool(last and ep.is_terminal[-1]),
                    "truncated": bool(last and not ep.is_terminal[-1]),
                }
                if ep.feedback[t + 1] != 0:
                    rec["feedback"] = float(ep.feedback[t + 1])
                if last:
                    rec["next_obs"] = _to_json(ep.obs[t + 1])
                fh.write(json.dumps(rec) + "\n")
                lines += 1
    return lines


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float
        return False


def _check_line(rec: Any, path: Path, lineno: int) -> None:
    def bad(msg: str) -> FormatError:
        return FormatError(f"{path}:{lineno}: {msg}")

    if not isinstance(rec, dict):
        raise bad(f"expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in STEP_KEYS if k not in rec]
    if missing:
        raise bad(f"missing field(s) {missing}; each line needs {list(STEP_KEYS)}")
    if not isinstance(rec["episode"], (str, int)) or isinstance(rec["episode"], bool):
        raise bad(f"field 'episode' must be a string or integer, got {rec['episode']!r}")
    if not _number(rec["reward"]) or not _finite(rec["reward"]):
        raise bad(f"field 'reward' must be a finite number, got {rec['reward']!r}")
    for k in ("terminated", "truncated"):
        if not isinstance(rec[k], bool):
            raise bad(f"field '{k}' must be true or false, got {rec[k]!r}")
    fb = rec.get("feedback")
    if fb is not None and (not _number(fb) or not _finite(fb)):
        raise bad(f"field 'feedback' must be a finite number (+1/-1 or a score), got {fb!r}")
    text = rec.get("feedback_text")
    if text is not None and not isinstance(text, str):
        raise bad(f"field 'feedback_text' must be a string (a user's written feedback) or null, got {text!r:.60}")
    if "info" in rec and not isinstance(rec["info"], dict):
        raise bad(f"field 'info' must be an object, got {type(rec['info']).__name__}")


def _array(value: Any, dtype: Any, path: Path, lineno: int, key: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """``value`` as an array of ``dtype``, never changing a value silently: a bool or a string where
    a number belongs, a fraction for an integer dtype, or a number outside the dtype's range is an
    error naming ``path:lineno`` and the field."""

    def bad(msg: str) -> FormatError:
        return FormatError(f"{path}:{lineno}: field '{key}' {msg}")

    target = np.dtype(dtype)
    kinds = _kinds(value)
    if "str" in kinds:
        raise bad(f"must be a number (or a list of numbers), got a string: {value!r:.60}")
    if "bool" in kinds and target.kind != "b":
        raise bad(f"must be a number, got true/false: {value!r:.60}")
    if "bigint" in kinds:
        raise bad(f"is out of range for {target}: {value!r:.60}")
    if "other" in kinds:
        raise bad(f"must be a number or a (nested) list of numbers, got {value!r:.60}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise bad(f"is not a numeric array: {' '.join(str(exc).split())[:120]}") from None
    if raw.dtype == object:
        raise bad("is ragged or non-numeric")
    if raw.dtype.kind not in "biuf":
        raise bad(f"is not numeric (dtype {raw.dtype})")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise bad("contains NaN or inf")
    if target.kind in "iu":
        if raw.dtype.kind == "f" and not np.all(np.equal(np.mod(raw, 1), 0)):
            raise bad(f"must be an integer for {target} (the space is discrete), got {value!r:.60}")
        info = np.iinfo(target)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise bad(f"is out of range for {target}: {value!r:.60}")
    elif target.kind == "f":
        if raw.size and np.abs(raw.astype(np.float64)).max() > np.finfo(target).max:
            raise bad(f"is out of range for {target}: {value!r:.60}")
    elif target.kind == "b" and raw.dtype.kind != "b" and not np.all((raw == 0) | (raw == 1)):
        raise bad(f"must be true/false or 0/1, got {value!r:.60}")
    arr = raw.astype(target)
    if shape is not None and arr.shape != shape:
        raise bad(f"has shape {arr.shape}, expected {shape}")
    return arr


def _kinds(value: Any) -> set[str]:
    """The kinds of leaves in a JSON value (walked without recursion): int, bigint (beyond 64
    bits), float, bool, str, other (null, objects)."""
    kinds: set[str] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int):
            kinds.add("int" if -(2**63) <= v < 2**64 else "bigint")
        elif isinstance(v, float):
            kinds.add("float")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add("other")
    return kinds


def _check_action(arr: np.ndarray, space: gym.Space, path: Path, lineno: int) -> None:
    try:
        check_actions(arr[None], space, path)
    except EpisodeError:
        raise FormatError(
            f"{path}:{lineno}: field 'action': {arr.tolist()} is outside the action space {space}"
        ) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; a byte that is not UTF-8 is an error naming the line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "JSONL logs must be UTF-8"
                ) from None


TextLabeller = Callable[[Sequence[str]], "Sequence[float] | np.ndarray"]
TEXT_NOTES = (
    "feedback_text",
    "feedback_text_labelled",
    "feedback_text_with_thumb",
    "feedback_text_unlabelled",
    "feedback_text_empty",
)


def read_jsonl(path: str | Path, env_id: str | None = None, label_text: TextLabeller | None = None) -> Logs:
    """Read JSONL deployment logs (schema in the module docstring). Errors name the file and line.

    ``label_text`` (texts -> one finite thumb each, called once with every ``feedback_text`` of a
    line that has no ``feedback``) turns written feedback into feedback values."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: file not found")
    if not path.is_file():
        raise FormatError(f"{path}: is a directory (or not a regular file); expected a JSONL file")
    header: dict[str, Any] | None = None
    order: list[Any] = []
    eps: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    ended: set[Any] = set()
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise FormatError(f"{path}:{lineno}: not valid JSON for a step (nested too deeply)") from None
        if lineno == 1 and isinstance(rec, dict) and rec.get("schema") == SCHEMA:
            header = rec
            continue
        _check_line(rec, path, lineno)
        key = rec["episode"]
        if key in ended:
            raise FormatError(f"{path}:{lineno}: episode {key!r} continues after a line that ended it")
        if key not in eps:
            eps[key] = []
            order.append(key)
        eps[key].append((lineno, rec))
        if rec["terminated"] or rec["truncated"]:
            ended.add(key)
    if not order:
        raise FormatError(f"{path}: no step lines found")
    obs_space, act_space, env_id = _jsonl_spaces(path, header, env_id, eps)
    obs_shape, act_shape = tuple(obs_space.shape or ()), tuple(act_space.shape or ())
    obs_dtype = obs_space.dtype or np.float32
    act_dtype = act_space.dtype or np.float32
    notes = {"final_obs_given": 0, "final_obs_repeated": 0, "last_line_dropped": 0, "unfinished": 0, "skipped_empty": 0}
    notes.update(dict.fromkeys(TEXT_NOTES, 0))
    pending: list[tuple[int, int, str]] = []  # (episode index, transition, text) awaiting a label
    episodes: list[Episode] = []
    for key in order:
        lines = eps[key]
        obs = [_array(r["obs"], obs_dtype, path, n, "obs", obs_shape) for n, r in lines]
        acts = [_array(r["action"], act_dtype, path, n, "action", act_shape) for n, r in lines]
        for (n, _), a in zip(lines, acts):
            _check_action(a, act_space, path, n)
        rews = [float(r["reward"]) for _, r in lines]
        fbs = [float(r.get("feedback") or 0.0) for _, r in lines]
        for i, (n, r) in enumerate(lines[:-1]):
            if "next_obs" in r:
                nxt = _array(r["next_obs"], obs_dtype, path, n, "next_obs", obs_shape)
                if not np.allclose(nxt, obs[i + 1], rtol=1e-6, atol=1e-7):
                    raise FormatError(
                        f"{path}:{n}: field 'next_obs' differs from the next line's obs "
                        f"(line {lines[i + 1][0]}) of episode {key!r}"
                    )
        last_no, last = lines[-1]
        terminated = bool(last["terminated"])
        if not (last["terminated"] or last["truncated"]):
            notes["unfinished"] += 1
        if "next_obs" in last:
            obs.append(_array(last["next_obs"], obs_dtype, path, last_no, "next_obs", obs_shape))
            notes["final_obs_given"] += 1
        elif terminated:
            obs.append(obs[-1].copy())
            notes["final_obs_repeated"] += 1
        else:
            acts, rews, fbs = acts[:-1], rews[:-1], fbs[:-1]
            notes["last_line_dropped"] += 1
        if not acts:
            notes["skipped_empty"] += 1
            continue
        src = f"{path}:{lines[0][0]} (episode {key!r})"
        try:
            ep = Episode.from_transitions(np.stack(obs), np.stack(acts), rews, terminated, fbs, act_space)
            ep.validate(obs_space, act_space, source=src)
        except EpisodeError as exc:
            raise FormatError(str(exc)) from None
        for t, (_, r) in enumerate(lines[: len(acts)]):
            text = r.get("feedback_text")
            if text is None:
                continue
            if not text.strip():
                notes["feedback_text_empty"] += 1
                continue
            notes["feedback_text"] += 1
            if r.get("feedback") is not None:
                notes["feedback_text_with_thumb"] += 1
            else:
                pending.append((len(episodes), t, text))
        episodes.append(ep)
    _label_texts(path, episodes, pending, label_text, notes)
    return Logs(episodes, env_id, obs_space, act_space, notes)


def _label_texts(
    path: Path,
    episodes: list[Episode],
    pending: list[tuple[int, int, str]],
    label_text: TextLabeller | None,
    notes: dict[str, int],
) -> None:
    """Write the labels of the pending texts into their episodes' feedback (the step after the action)."""
    if not pending:
        return
    if label_text is None:
        notes["feedback_text_unlabelled"] += len(pending)
        return
    values = np.asarray(label_text([text for _, _, text in pending]), np.float64)
    if values.shape != (len(pending),) or not np.all(np.isfinite(values)):
        raise FormatError(
            f"{path}: the feedback_text labeller returned shape {values.shape} (finite: "
            f"{bool(np.all(np.isfinite(values)))}); expected ({len(pending)},) finite values"
        )
    for (e, t, _), v in zip(pending, values):
        episodes[e].feedback[t + 1] = np.float32(v)
    notes["feedback_text_labelled"] += len(pending)


def _jsonl_spaces(
    path: Path, header: dict[str, Any] | None, env_id: str | None, eps: dict[Any, list[tuple[int, dict[str, Any]]]]
) -> tuple[gym.Space, gym.Space, str | None]:
    if header is not None:
        try:
            obs_space = space_from_json(header["observation_space"])
            act_space = space_from_json(header["action_space"])
        except (KeyError, TypeError, ValueError, AttributeError, SpaceError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise FormatError(f"{path}:1: header field 'observation_space'/'action_space' invalid: {msg}") from None
        hid = header.get("env_id")
        if env_id is not None and hid is not None and hid != env_id:
            raise FormatError(f"{path}:1: header env_id '{hid}' differs from the requested env '{env_id}'")
        return obs_space, act_space, env_id or hid
    if env_id is not None:
        from dreamlab.data.collect import make_env  # local: collect imports this module's peers

        env = make_env(env_id)
        spaces = env.observation_space, env.action_space
        env.close()
        return spaces[0], spaces[1], env_id
    first_no, first = next(iter(eps.values()))[0]
    obs0 = _array(first["obs"], np.float32, path, first_no, "obs", None)
    obs_space = gym.spaces.Box(-np.inf, np.inf, obs0.shape, np.float32)
    actions = [r["action"] for lines in eps.values() for _, r in lines]
    if all(isinstance(a, int) and not isinstance(a, bool) for a in actions):
        if min(actions) < 0 or max(actions) >= 2**31:
            raise FormatError(
                f"{path}: integer actions must be in [0, 2**31) to infer a Discrete space, got {min(actions)}.."
                f"{max(actions)} (give --env)"
            )
        return obs_space, gym.spaces.Discrete(max(actions) + 1), None
    a0 = _array(first["action"], np.float32, path, first_no, "action", None)
    return obs_space, gym.spaces.Box(-np.inf, np.inf, a0.shape, np.float32), None


# ------------------------------------------------------------------------------------ Minari
# in data/minari_format.py (minari itself is imported only when used); re-exported here
from dreamlab.data.minari_format import export_minari, read_minari  # noqa: E402, F401
