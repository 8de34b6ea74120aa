"""Drive the synchronous engine from one background thread; hand results to asyncio.

The HTTP handlers run on the event loop; the model runs on this thread (torch
releases the GIL inside its kernels, so the loop stays responsive). Requests and
aborts cross into the thread through a locked inbox; outputs cross back with
`loop.call_soon_threadsafe`, one call per step. The thread sleeps on an event
when there is nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from .errors import EngineError, Unavailable
from .llm_engine import LLMEngine, RequestOutput
from .metrics import EngineMetrics
from .sequence import SamplingParams

log = logging.getLogger("llmfleet.engine")


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    arrival: float
    max_tokens: int = 0
    generated: int = 0  # output tokens delivered so far (written on the engine thread)
    first_token: float | None = None


class AsyncEngine:
    def __init__(self, engine: LLMEngine, metrics: EngineMetrics, max_waiting: int):
        self.engine = engine
        self.metrics = metrics
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._inbox: list[tuple] = []
        self._wake = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._stop = False
        self._last_preemptions = 0
        self._last_queries = 0
        self._last_hits = 0
        self._step_seconds: float | None = None  # moving average of one step's wall time
        metrics.set_cache_config(engine.config.block_size, engine.runner.num_blocks)
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    # -- event-loop side -------------------------------------------------------------------------
    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    @property
    def num_waiting(self) -> int:
        """Admitted but not yet scheduled (includes requests still in the inbox)."""
        return max(0, len(self._streams) - self.engine.num_running)

    def seconds_left(self) -> list[float] | None:
        """Per in-flight request, longest first: its output tokens still allowed (max_tokens minus
        those generated) times the current step time, as the operator's drain needs it to count
        the requests a shortened grace would cut. An upper bound per request (EOS or a stop string
        may end it sooner), leaving out the time a request still waits in the queue; None before
        the first step has been timed."""
        step = self._step_seconds
        if step is None:
            return None
        left = [max(0, s.max_tokens - s.generated) * step for s in list(self._streams.values())]
        return sorted((round(x, 2) for x in left), reverse=True)

    async def generate(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                       arrival: float | None = None) -> AsyncGenerator[RequestOutput, None]:
        """Yield outputs of one request; closing the iterator early aborts it and frees its blocks."""
        self.engine.check_lengths(len(prompt_ids), params)
        if self.num_waiting >= self.max_waiting:
            # Counted in llmfleet_engine_requests_rejected_total by the HTTP edge (server.py), which
            # counts every rejection once, whatever raised it.
            raise Unavailable(f"the waiting queue is full ({self.max_waiting} requests); retry later",
                              retry_after=1.0, code="queue_full")
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue(), arrival or time.monotonic(), params.max_tokens)
        self._streams[request_id] = stream
        self._send(("add", request_id, prompt_ids, params, stream.arrival))
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    finished = True  # failed and already removed from the engine (counted as "error")
                    raise item
                finished = item.finished  # set before yielding: the consumer may close us right after
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self.metrics.finished.labels(finish_reason="abort").inc()
                self._send(("abort", request_id))

    def _send(self, msg: tuple) -> None:
        with self._lock:
            self._inbox.append(msg)
        self._wake.set()

    def shutdown(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)

    # -- engine-thread side -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            with self._lock:
                inbox, self._inbox = self._inbox, []
            for msg in inbox:
                self._handle(msg)
            if not self.engine.has_work:
                self._publish_load()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            began = time.monotonic()
            try:
                outputs = self.engine.step()
            except Exception as e:  # a bug or device failure: fail the batch, keep the process serving
                log.exception("engine step failed")
                self._fail_all(EngineError(f"engine step failed: {e}"))
                continue
            took = time.monotonic() - began
            self._step_seconds = took if self._step_seconds is None else 0.8 * self._step_seconds + 0.2 * took
            self._deliver(outputs)
            self._publish_load()

    def _handle(self, msg: tuple) -> None:
        if msg[0] == "abort":
            self.engine.abort(msg[1])
            return
        _, rid, prompt_ids, params, arrival = msg
        stream = self._streams.get(rid)
        if stream is None:  # the client left before the request reached the engine
            return
        try:
            self.engine.add_request(rid, prompt_ids, params, arrival)
            self.metrics.prompt_tokens.inc(len(prompt_ids))
        except EngineError as e:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, e)
        except Exception as e:  # a bug must fail this request only, never the engine thread
            log.exception("adding a request failed")
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, EngineError(f"request failed: {e}"))

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        now = time.monotonic()
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for out in outputs:
            self.metrics.generation_tokens.inc(len(out.new_token_ids))
            stream = self._streams.get(out.request_id)
            if stream is None:
                continue
            stream.generated = out.num_output_tokens
            if stream.first_token is None and out.error is None:
                stream.first_token = now
                self.metrics.ttft.observe(now - stream.arrival)
            if out.finished:
                self.metrics.finished.labels(finish_reason=out.finish_reason).inc()
                self.metrics.e2e.observe(now - stream.arrival)
                if out.num_output_tokens > 1 and stream.first_token is not None:
                    self.metrics.tpot.observe((now - stream.first_token) / (out.num_output_tokens - 1))
            item: RequestOutput | EngineError = out if out.error is None else EngineError(out.error)
            by_loop.setdefault(stream.loop, []).append((stream.queue, item))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_put_all, items)

    def _fail_all(self, err: Exception) -> None:
        for rid, stream in list(self._streams.items()):
            self.engine.abort(rid)
            self.metrics.finished.labels(finish_reason="error").inc()
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, err)

    def _publish_load(self) -> None:
        e = self.engine
        self.metrics.set_load(len(e.scheduler.waiting), len(e.scheduler.running), e.blocks.usage)
        b = e.blocks
        self.metrics.prefix_queries.inc(b.prefix_queries - self._last_queries)
        self.metrics.prefix_hits.inc(b.prefix_hits - self._last_hits)
        self.metrics.preemptions.inc(e.scheduler.num_preemptions - self._last_preemptions)
        self._last_queries, self._last_hits = b.prefix_queries, b.prefix_hits
        self._last_preemptions = e.scheduler.num_preemptions


def _put_all(items) -> None:
    for queue, out in items:
        queue.put_nowait(out)
