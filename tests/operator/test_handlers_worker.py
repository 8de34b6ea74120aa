"""The per-service worker sleeps until there is work: a watch event wakes it, else its next sync.

No polling: between sync periods a quiet service's worker sleeps the whole interval; a child's
watch event (mark_status) ends the sleep at once.
"""

from __future__ import annotations

import asyncio

from fakes import NS, World, sync


def test_a_quiet_service_sleeps_until_its_next_sync_period():
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.run_pods()
    sync(world, rec)
    assert rec.seconds_to_work(NS, "chat") == 15  # DEFAULT_SYNC_SECONDS: nothing dirty, nothing due
    world.advance(10)
    assert rec.seconds_to_work(NS, "chat") == 5


def test_a_child_event_wakes_the_worker_at_once():
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.run_pods()
    sync(world, rec)

    async def sleep_then_wake() -> bool:
        waiter = asyncio.create_task(rec.wait_for_work(NS, "chat", longest=30))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # asleep: nothing to do
        rec.mark_status(NS, "chat")  # what kopf's Pod event handler does
        await asyncio.wait_for(waiter, 5)
        return rec.seconds_to_work(NS, "chat") == 0

    assert asyncio.run(sleep_then_wake())


def test_held_demand_makes_the_periodic_sync_due_at_once():
    """A router reports requests held for the service (router_demand.py's watch): the worker
    wakes and its next sync is the periodic one (scrape and autoscale) now, not in 15 s."""
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.run_pods()
    sync(world, rec)

    async def sleep_then_demand() -> float:
        waiter = asyncio.create_task(rec.wait_for_work(NS, "chat", longest=30))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        rec.demand_seen(NS, "chat")
        await asyncio.wait_for(waiter, 5)
        return rec.seconds_to_work(NS, "chat")

    assert asyncio.run(sleep_then_demand()) == 0
    assert rec.services[(NS, "chat")].next_sync <= rec.monotonic()  # due: periodic=True at the next tick
    rec.demand_seen(NS, "unknown")  # a service this operator does not serve: nothing happens


def test_a_stopping_worker_leaves_its_sleep_at_once():
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.run_pods()
    sync(world, rec)

    async def stop_while_asleep() -> None:
        stop = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(rec.wait_for_work(NS, "chat", longest=30, stop=stop))
        await asyncio.sleep(0.05)
        stop.set_result(True)  # kopf's `stopped` flag: the LLMService is being deleted
        await asyncio.wait_for(waiter, 1)

    asyncio.run(stop_while_asleep())
