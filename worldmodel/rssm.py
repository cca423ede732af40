"""The RSSM: a normalised (block-diagonal) GRU, categorical latents, and K prior heads.

A *state* is ``{"deter": (..., D), "stoch": (..., G, C) one-hot, "logits": (..., G, C)}``
(``logits`` are unimix log-probabilities). Moving into step t uses ``action[t-1]`` (zero where
``is_first``); a state is reset to zeros at ``is_first``.

Speed: :meth:`RSSM.observe` keeps only the GRU and the posterior inside the time loop. The
action's and the embedding's contributions to the first linear layers are computed for the
whole sequence before the loop, and the K prior heads run on all steps at once after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dreamlab.worldmodel.dists import sample_onehot, unimix

State = dict[str, torch.Tensor]


class BlockGRU(nn.Module):
    """DreamerV3's GRU: linear layers on the input and the state -> LayerNorm -> gates.

    ``reset, cand, update = norm(W_i x + W_r h)``; ``h' = lerp(h, tanh(sigmoid(reset) * cand),
    sigmoid(update))`` (the update gate's LayerNorm bias starts at -1, DreamerV3's ``update - 1``).
    With ``blocks > 1`` the recurrent weights are block-diagonal: block b of the state sees the
    whole input but only its own slice of the previous state (fewer weights, cheaper steps).
    """

    def __init__(self, inp: int, deter: int, blocks: int = 1):
        super().__init__()
        self.deter, self.blocks = deter, blocks
        self.width = deter // blocks
        self.inp = nn.Linear(inp, 3 * deter, bias=False)
        if blocks == 1:
            self.rec = nn.Linear(deter, 3 * deter, bias=False)
        else:
            w = torch.empty(blocks, self.width, 3 * self.width)
            nn.init.uniform_(w, -(self.width**-0.5), self.width**-0.5)
            self.rec_w = nn.Parameter(w)
        self.norm = nn.LayerNorm(3 * self.width, eps=1e-3)
        with torch.no_grad():
            self.norm.bias[2 * self.width :] = -1.0

    def gates(self, x: torch.Tensor, deter: torch.Tensor) -> torch.Tensor:
        """(..., H), (..., D) -> (..., 3D) pre-norm gates laid out as blocks x (reset, cand, update) x width."""
        if self.blocks == 1:
            if x.dim() == 2:
                return torch.addmm(torch.mm(x, self.inp.weight.t()), deter, self.rec.weight.t())
            return self.inp(x) + self.rec(deter)
        h = rearrange(deter, "... (g w) -> ... g w", g=self.blocks)
        h = torch.einsum("...gw,gwo->...go", h, self.rec_w)
        return self.inp(x) + rearrange(h, "... g o -> ... (g o)")

    def forward(self, x: torch.Tensor, deter: torch.Tensor) -> torch.Tensor:
        """x: (..., H) input, deter: (..., D) -> new deter (..., D)."""
        g = self.gates(x, deter).float()  # gates and the recurrent state in fp32 (matmuls may run in bf16)
        if self.blocks > 1:
            g = g.reshape(*g.shape[:-1], self.blocks, 3 * self.width)  # (..., g, 3w)
        g = self.norm(g)
        reset, cand, update = g.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update)
        if self.blocks > 1:
            cand, update = cand.reshape(deter.shape), update.reshape(deter.shape)
        return torch.lerp(deter, cand, update)


def _affine(base: torch.Tensor, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """base + x @ W^T in one op for 2-D inputs (the time loop), broadcasting otherwise."""
    if x.dim() == 2 and base.dim() == 2:
        return torch.addmm(base, x, layer.weight.t())
    return base + F.linear(x, layer.weight)


class PriorEnsemble(nn.Module):
    """K prior heads deter -> hidden (LayerNorm, SiLU) -> G*C logits, evaluated together."""

    def __init__(self, deter: int, hidden: int, stoch: int, members: int):
        super().__init__()
        self.members = members
        self.w1 = nn.Parameter(torch.randn(members, deter, hidden) * deter**-0.5)
        self.ln_w = nn.Parameter(torch.ones(members, hidden))
        self.ln_b = nn.Parameter(torch.zeros(members, hidden))
        self.w2 = nn.Parameter(torch.randn(members, hidden, stoch) * hidden**-0.5)
        self.b2 = nn.Parameter(torch.zeros(members, stoch))

    def forward(self, deter: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K, G*C) raw logits of every head."""
        h = torch.einsum("...d,kdh->...kh", deter, self.w1)
        h = F.layer_norm(h, h.shape[-1:], eps=1e-3) * self.ln_w + self.ln_b
        return torch.einsum("...kh,khs->...ks", F.silu(h), self.w2) + self.b2


class RSSM(nn.Module):
    def __init__(
        self,
        embed: int,
        action: int,
        deter: int,
        hidden: int,
        groups: int,
        classes: int,
        blocks: int = 1,
        members: int = 1,
        unimix: float = 0.01,
    ):
        super().__init__()
        self.deter, self.groups, self.classes = deter, groups, classes
        self.stoch = groups * classes
        self.unimix = unimix
        self.members = members
        # img input: Linear([stoch, action]) split in two so the action part is precomputed
        self.in_stoch = nn.Linear(self.stoch, hidden, bias=False)
        self.in_action = nn.Linear(action, hidden)
        self.in_norm = nn.LayerNorm(hidden, eps=1e-3)
        self.gru = BlockGRU(hidden, deter, blocks)
        # posterior: Linear([deter, embed]) split the same way
        self.post_deter = nn.Linear(deter, hidden, bias=False)
        self.post_embed = nn.Linear(embed, hidden)
        self.post_norm = nn.LayerNorm(hidden, eps=1e-3)
        self.post_out = nn.Linear(hidden, self.stoch)
        self.prior = PriorEnsemble(deter, hidden, self.stoch, members)

    # ------------------------------------------------------------------------ pieces
    def initial(self, batch_size: int, device: torch.device | None = None) -> State:
        dev = device if device is not None else self.in_norm.weight.device
        zeros = torch.zeros(batch_size, self.groups, self.classes, device=dev)
        return {"deter": torch.zeros(batch_size, self.deter, device=dev), "stoch": zeros, "logits": zeros.clone()}

    def _gru_step(self, deter: torch.Tensor, stoch_flat: torch.Tensor, act_in: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.in_norm(_affine(act_in, stoch_flat, self.in_stoch)))
        return self.gru(x, deter)

    def _mix(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., G*C) raw logits -> (..., G, C) probabilities with the uniform mix."""
        raw = raw.float()  # probabilities, their logs and the KL stay fp32 under bf16 autocast
        return unimix(torch.softmax(raw.reshape(*raw.shape[:-1], self.groups, self.classes), -1), self.unimix)

    def _post_probs(self, deter: torch.Tensor, embed_in: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.post_norm(_affine(embed_in, deter, self.post_deter)))
        return self._mix(self.post_out(h))

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K, G, C) unimix log-probs of every ensemble head."""
        return torch.log(self._mix(self.prior(deter)))

    # ------------------------------------------------------------------------ contract
    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
        mode: bool = False,
    ) -> tuple[State, torch.Tensor]:
        """embed (B,T,E), action (B,T,A) taken at t, is_first (B,T) -> post (B,T,...), prior logits (B,T,K,G,C)."""
        B, T = embed.shape[:2]
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)  # (B, T, A)
        keep = (~is_first.bool()).to(embed.dtype)  # (B, T)
        prev_action = prev_action * keep.unsqueeze(-1)
        act_in = self.in_action(prev_action)  # (B, T, H), outside the loop
        embed_in = self.post_embed(embed)  # (B, T, H), outside the loop
        noise = None if mode else torch.empty(T, B, self.groups, self.classes, device=embed.device).exponential_()
        resets = (keep < 1).any(0).tolist()  # which steps reset some row
        if state is None:
            state = self.initial(B, embed.device)
            resets[0] = False  # the initial state is zero already
        deter, stoch = state["deter"], state["stoch"].reshape(B, self.stoch)
        deters, probs_all, stochs = [], [], []
        for t in range(T):
            if resets[t]:
                k = keep[:, t, None]
                deter, stoch = deter * k, stoch * k
            deter = self._gru_step(deter, stoch, act_in[:, t])
            probs = self._post_probs(deter, embed_in[:, t])  # (B, G, C)
            sample = sample_onehot(probs, None if noise is None else noise[t], mode)
            stoch = sample.reshape(B, self.stoch)
            deters.append(deter)
            probs_all.append(probs)
            stochs.append(sample)
        post = {
            "deter": torch.stack(deters, 1),
            "stoch": torch.stack(stochs, 1),
            "logits": torch.log(torch.stack(probs_all, 1)),
        }
        return post, self.prior_logits(post["deter"])

    def obs_step(
        self, state: State, prev_action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor, mode: bool = False
    ) -> State:
        keep = (~is_first.bool()).to(embed.dtype).unsqueeze(-1)  # (..., 1)
        stoch = state["stoch"].reshape(*state["stoch"].shape[:-2], self.stoch) * keep
        deter = self._gru_step(state["deter"] * keep, stoch, self.in_action(prev_action * keep))
        probs = self._post_probs(deter, self.post_embed(embed))
        return {"deter": deter, "stoch": sample_onehot(probs, mode=mode), "logits": torch.log(probs)}

    def img_step(self, state: State, action: torch.Tensor, member: int | None = None, mode: bool = False) -> State:
        stoch = state["stoch"].reshape(*state["stoch"].shape[:-2], self.stoch)
        deter = self._gru_step(state["deter"], stoch, self.in_action(action))
        if member is not None and not 0 <= member < self.members:
            raise IndexError(f"ensemble member {member} out of range [0, {self.members})")
        all_probs = self._mix(self.prior(deter))  # (..., K, G, C)
        if member is not None or self.members == 1:
            probs = all_probs[..., member or 0, :, :]
        else:
            pick = torch.randint(0, self.members, deter.shape[:-1], device=deter.device)
            idx = pick[..., None, None, None].expand(*deter.shape[:-1], 1, self.groups, self.classes)
            probs = all_probs.gather(-3, idx).squeeze(-3)
        return {"deter": deter, "stoch": sample_onehot(probs, mode=mode), "logits": torch.log(probs)}

    def disagreement(self, state: State, action: torch.Tensor) -> torch.Tensor:
        """(...) std across the K heads of the next step's class probabilities, summed over
        classes and averaged over groups (0 = all heads agree; at most ~1)."""
        stoch = state["stoch"].reshape(*state["stoch"].shape[:-2], self.stoch)
        deter = self._gru_step(state["deter"], stoch, self.in_action(action))
        if self.members < 2:
            return torch.zeros(deter.shape[:-1], device=deter.device)
        probs = self._mix(self.prior(deter))  # (..., K, G, C)
        return probs.std(-3, unbiased=False).sum(-1).mean(-1)
