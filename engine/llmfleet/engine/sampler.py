"""Turn a step's logits into next tokens, one row per sampling sequence.

Greedy rows are an argmax over the batch. Sampled rows apply temperature, top-k
and top-p, then draw with the sequence's own torch.Generator, seeded from the
request's `seed`, so the same seed gives the same output regardless of what
else is in the batch. Before `min_tokens` outputs, end-of-sequence and stop
token ids are masked out.

A row that cannot be sampled (parameters the edge should have refused) fails that
sequence only: `sample` returns its error in place of a token, and the rest of the
batch goes on. Ids outside the logits are never used as indices (on CUDA an
out-of-range index is a device assert that poisons the context for everyone).
"""

from __future__ import annotations

import torch

from .sequence import Sequence


def _blocked_ids(seq: Sequence, eos_ids: list[int], vocab: int) -> list[int]:
    if seq.num_output_tokens >= seq.params.min_tokens:
        return []
    ids = set(seq.params.stop_token_ids) | (set() if seq.params.ignore_eos else set(eos_ids))
    return sorted(t for t in ids if 0 <= t < vocab)


def _sample_row(seq: Sequence, row: torch.Tensor, default_seed: int) -> int:
    p = seq.params
    if seq.generator is None:
        seed = p.seed if p.seed is not None else default_seed + seq.seq_id
        seq.generator = torch.Generator(device="cpu").manual_seed(seed)
    x = row.float().cpu() / p.temperature
    if p.top_k and 0 < p.top_k < x.shape[-1]:
        kth = torch.topk(x, p.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # keep the smallest set whose mass reaches top_p (always at least the top token)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= p.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=seq.generator).item())


def sample(seqs: list[Sequence], logits: torch.Tensor, eos_ids: list[int],
           default_seed: int = 0) -> list[int | Exception]:
    """One entry per row: the next token, or the exception that row raised."""
    vocab = logits.shape[-1]
    for row, seq in enumerate(seqs):
        blocked = _blocked_ids(seq, eos_ids, vocab)
        if blocked:
            logits[row, blocked] = float("-inf")
    tokens: list[int | Exception] = list(logits.argmax(dim=-1).tolist())
    for row, seq in enumerate(seqs):
        if seq.params.greedy:
            continue
        try:
            tokens[row] = _sample_row(seq, logits[row], default_seed)
        except (RuntimeError, ValueError, OverflowError, ZeroDivisionError) as e:
            tokens[row] = e
    return tokens
