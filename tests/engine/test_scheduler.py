"""Continuous batching decisions, without a model: budgets, chunking, admission, preemption."""

from __future__ import annotations

from llmfleet.engine.block_manager import BlockManager
from llmfleet.engine.scheduler import Scheduler
from llmfleet.engine.sequence import SamplingParams, Sequence, SequenceStatus


def make(num_blocks=64, block_size=4, max_num_seqs=8, budget=32):
    return Scheduler(BlockManager(num_blocks, block_size), max_num_seqs, budget)


def add(s: Scheduler, n_tokens: int, rid: str) -> Sequence:
    """A prompt of distinct tokens per request id, so no prefix-cache hits unless a test wants them."""
    base = 1000 * (sum(map(ord, rid)) % 50)
    q = Sequence(rid, list(range(base + 1, base + n_tokens + 1)), SamplingParams())
    s.add(q)
    return q


def step(s: Scheduler, new_token: int = 7):
    """Schedule, 'run', and append a token to sequences that reached their end."""
    plan = s.schedule()
    s.on_step_done(plan)
    for item in plan.scheduled:
        if item.seq.num_computed_tokens == len(item.seq):
            item.seq.token_ids.append(new_token)
    return plan


def test_decodes_go_first_and_prompts_are_chunked_to_the_budget():
    s = make(budget=16)
    a = add(s, 5, "a")
    step(s)  # a prefilled
    b = add(s, 40, "b")
    plan = step(s)
    assert [(i.seq.request_id, i.num_new_tokens) for i in plan.scheduled] == [("a", 1), ("b", 15)]
    plan = step(s)
    assert [(i.seq.request_id, i.num_new_tokens) for i in plan.scheduled] == [("a", 1), ("b", 15)]
    plan = step(s)
    assert [(i.seq.request_id, i.num_new_tokens) for i in plan.scheduled] == [("a", 1), ("b", 10)]
    assert a.status is b.status is SequenceStatus.RUNNING


def test_prefix_hits_shorten_the_prefill():
    s = make(budget=64)
    a = add(s, 12, "a")
    step(s)
    b = Sequence("b", a.token_ids[:12] + [5, 6], SamplingParams())
    s.add(b)
    plan = step(s)
    assert plan.scheduled[-1].num_new_tokens == 2 and b.num_cached_tokens == 12


def test_max_num_seqs_limits_the_running_batch():
    s = make(max_num_seqs=2)
    for i in range(4):
        add(s, 3, str(i))
    plan = step(s)
    assert len(plan.scheduled) == 2 and len(s.waiting) == 2


def test_waiting_requests_are_admitted_in_arrival_order():
    s = make(budget=8)
    for i in range(3):
        add(s, 5, str(i))
    assert [i.seq.request_id for i in step(s).scheduled] == ["0", "1"]  # 5 + 3 (chunk) tokens


def test_preemption_frees_the_newest_and_requeues_it_first():
    s = make(num_blocks=4, block_size=4, budget=64)  # 16 tokens of cache
    old = add(s, 7, "old")
    new = add(s, 7, "new")
    step(s)  # both prefilled: 2 blocks each, 8 slots used of... 4 blocks total
    for _ in range(2):
        plan = step(s)
    assert new.status is SequenceStatus.WAITING and s.waiting[0] is new
    assert plan.scheduled[0].seq is old
    assert new.block_table == [] and new.num_computed_tokens == 0
    assert len(new.output_token_ids) >= 1  # generated tokens are kept for recompute
    assert s.num_preemptions >= 1


def test_a_lone_sequence_never_deadlocks_when_the_pool_fits_it():
    s = make(num_blocks=4, block_size=4, budget=64)
    q = add(s, 3, "only")
    for _ in range(12):  # grows to 15 tokens: fits 4 blocks of 4
        step(s)
    assert q.status is SequenceStatus.RUNNING and len(q.block_table) == 4


def test_abort_returns_blocks_from_waiting_and_running():
    s = make()
    a = add(s, 9, "a")
    b = add(s, 9, "b")
    step(s)
    s.abort(a)
    s.abort(b)
    assert s.blocks.usage == 0.0 and not s.has_work
