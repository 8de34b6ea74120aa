"""Which sequences run this step, and on how many tokens: continuous batching.

Each step has a token budget (max_num_batched_tokens). Running sequences go first,
in arrival order: a decode costs one token, an unfinished prompt costs a chunk
(chunked prefill), so a long prompt never stalls the decodes beside it. Then
waiting sequences are admitted, oldest first, while the budget, max_num_seqs and
free KV blocks allow.

When a running sequence needs a block and none is free, the newest running
sequence is preempted by recompute: its blocks are freed and it goes back to the
front of the waiting queue with its generated tokens kept, to be prefilled again
later (prefix caching usually makes that cheap). The oldest sequence can always
proceed because the pool holds at least one max_model_len sequence, so the
scheduler never deadlocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .sequence import Sequence, SequenceStatus


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_new_tokens: int

    @property
    def completes_prompt(self) -> bool:
        """True when this step reaches the end of the sequence's tokens, so its logits are sampled."""
        return self.seq.num_computed_tokens + self.num_new_tokens == len(self.seq)


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    def __bool__(self) -> bool:
        return bool(self.scheduled)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        self.blocks = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    # -- queue ----------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def abort(self, seq: Sequence) -> None:
        """Remove a sequence wherever it is and give its blocks back."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq)
        seq.status = SequenceStatus.FINISHED

    def finish(self, seq: Sequence, reason: str) -> None:
        seq.finish_reason = reason
        self.abort(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # -- the step plan ------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens

        # 1. Running sequences, oldest first; preempt from the newest end when blocks run out.
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_uncomputed_tokens, budget)
            while not self.blocks.can_allocate(seq, n):
                victim = self.running[-1]
                self._preempt(victim, out)
                if victim is seq:
                    break
            else:
                self.blocks.allocate(seq, n)
                out.scheduled.append(ScheduledSeq(seq, n))
                budget -= n
                i += 1
                continue
            break  # seq itself was preempted: nothing after it can run either

        # 2. Admit waiting sequences while budget, batch size and blocks allow (no preemption for them).
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not out.preempted:
            seq = self.waiting[0]
            if not seq.block_table:
                self.blocks.match_prefix(seq)
            n = min(seq.num_uncomputed_tokens, budget)
            if not self.blocks.can_allocate(seq, n):
                # Keep its prefix-hit blocks? No: give them back so they stay evictable while it waits.
                self.blocks.free(seq)
                break
            self.waiting.popleft()
            self.blocks.allocate(seq, n)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.scheduled.append(ScheduledSeq(seq, n))
            budget -= n
        return out

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)
        out.preempted.append(seq)

    def on_step_done(self, out: SchedulerOutput) -> None:
        """Advance computed-token counts after the model ran the planned tokens."""
        for item in out.scheduled:
            item.seq.num_computed_tokens += item.num_new_tokens
            self.blocks.commit_computed(item.seq)
