"""The llama.cpp baseline's request scheduling, checked without llama.cpp (a fake engine stands in)."""

from __future__ import annotations

from benchmarks.bench import Req
from benchmarks.bench_llamacpp import Seq, admit, agreement, plan_step, serve, step_done


def test_plan_step_decodes_first_then_chunks_prompts_within_the_budget():
    dec = Seq(0, [1, 2, 3], 5, 0.0, seq_id=0, fed=3, out=[9])
    long = Seq(1, list(range(10)), 4, 0.0, seq_id=1)
    short = Seq(2, [7, 7], 4, 0.0, seq_id=2)
    entries = plan_step([long, dec, short], budget=8)
    assert [(e.seq.index, e.tokens, e.pos, e.logits) for e in entries] == [
        (0, [9], 3, True),  # the decode token, at the position after the prompt
        (1, list(range(7)), 0, False),  # a prompt chunk that does not end the prompt: no logits
    ]
    step_done(entries)
    assert (dec.fed, long.fed, short.fed) == (4, 7, 0)
    entries = plan_step([long, short], budget=8)
    assert [(e.seq.index, e.tokens, e.pos, e.logits) for e in entries] == [
        (1, [7, 8, 9], 7, True), (2, [7, 7], 0, True)]


def test_admit_takes_arrived_requests_into_free_slots_in_order():
    waiting = [Seq(i, [1], 1, arrival=a) for i, a in enumerate([0.0, 0.1, 0.2, 5.0])]
    running: list[Seq] = []
    free = [0, 1]
    admit(waiting, running, free, now=1.0)
    assert [(s.index, s.seq_id) for s in running] == [(0, 0), (1, 1)]
    assert [s.index for s in waiting] == [2, 3] and free == []


class FakeEngine:
    """Checks what a real llama_decode would need: positions contiguous per sequence, seq ids of running
    requests distinct and below the slot count, a free before a seq id is reused."""

    n_batch = 16

    def __init__(self, slots: int):
        self.slots = slots
        self.kv: dict[int, list[int]] = {}  # seq_id -> token ids in its stream
        self.steps = 0

    def decode(self, entries):
        self.steps += 1
        ids = [e.seq.seq_id for e in entries]
        assert len(ids) == len(set(ids)) and all(0 <= i < self.slots for i in ids)
        assert sum(len(e.tokens) for e in entries) <= self.n_batch
        picked = []
        for e in entries:
            stream = self.kv.setdefault(e.seq.seq_id, [])
            assert e.pos == len(stream), "positions must continue the sequence's stream"
            stream.extend(e.tokens)
            if e.logits:
                picked.append(1000 + len(stream))  # a token that depends on the stream's length
        step_done(entries)
        return picked

    def free(self, s):
        assert self.kv.pop(s.seq_id) == s.prompt + s.out[:-1]


def test_serve_runs_every_request_to_its_length_and_frees_every_stream():
    reqs = [Req(list(range(1, 3 + 7 * i)), 1 + (i * 5) % 9, 0.0) for i in range(7)]
    eng = FakeEngine(slots=3)
    res, tokens = serve(eng, reqs, slots=3)  # type: ignore[arg-type]
    assert [len(t) for t in tokens] == [r.max_tokens for r in reqs]
    for r, t in zip(reqs, tokens, strict=True):  # each token follows from the stream it was fed
        assert t == [1000 + len(r.prompt) + k for k in range(r.max_tokens)]
    assert eng.kv == {}
    assert res.n == 7 and res.out_tokens == sum(r.max_tokens for r in reqs) and len(res.ttft) == 7
    assert len(res.tpot) == sum(r.max_tokens > 1 for r in reqs)


def test_agreement_counts_the_common_leading_tokens():
    assert agreement([1, 2, 3, 4], [1, 2, 5, 4]) == 2
    assert agreement([1, 2], [1, 2, 3]) == 2
