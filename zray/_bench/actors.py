"""Actor workloads: calls to sync and async actors from one or many callers,
to one or many actors, and actor creation (create + first call)."""

import gc
import time

# As in Ray's script: the threads of the actor of 1_1_actor_calls_concurrent.
_CONCURRENCY = 16
# Pause after killing a round's actors so that their workers are gone before
# the next actor_creation round starts.
_KILL_SETTLE_S = 0.2


def _servers(cfg):
    """Number of server actors of 1:n and n:n (half the CPUs, as Ray's script)."""
    return max(1, cfg.num_cpus // 2)


def _time_calls(rn, name, actor, batch):
    """Time calls to ``actor.small_value``, one at a time or ``batch`` at once."""
    ray = rn.ray
    try:
        if batch is None:

            def calls():
                ray.get(actor.small_value.remote())

            rn.timeit(name, calls)
        else:

            def calls():
                ray.get([actor.small_value.remote() for _ in range(batch)])

            rn.timeit(name, calls, batch)
    finally:
        rn.kill(actor)


def one_one_actor_calls_sync(rn):
    _time_calls(rn, "1_1_actor_calls_sync", rn.r.Actor.remote(), None)


def one_one_actor_calls_async(rn):
    _time_calls(rn, "1_1_actor_calls_async", rn.r.Actor.remote(), rn.cfg.batch)


def one_one_actor_calls_concurrent(rn):
    actor = rn.r.Actor.options(max_concurrency=_CONCURRENCY).remote()
    _time_calls(rn, "1_1_actor_calls_concurrent", actor, rn.cfg.batch)


def one_one_async_actor_calls_sync(rn):
    _time_calls(rn, "1_1_async_actor_calls_sync", rn.r.AsyncActor.remote(), None)


def one_one_async_actor_calls_async(rn):
    _time_calls(rn, "1_1_async_actor_calls_async", rn.r.AsyncActor.remote(), rn.cfg.batch)


def one_many_actor_calls_async(rn):
    """One client actor calling each server actor ``2 * multi_n`` times (Ray: 10x more)."""
    ray, r = rn.ray, rn.r
    n = rn.cfg.multi_n * 2
    n_servers = _servers(rn.cfg)
    servers = [r.Actor.remote() for _ in range(n_servers)]
    client = r.Client.remote(servers)
    try:

        def actor_async_direct():
            ray.get(client.small_value_batch.remote(n))

        rn.timeit("1_n_actor_calls_async", actor_async_direct, n * n_servers)
    finally:
        rn.kill(client, *servers)


def many_many_actor_calls_async(rn):
    """``multi_m`` tasks each making ``multi_n`` calls over the server actors (Ray: 10x more)."""
    ray, r = rn.ray, rn.r
    n, m = rn.cfg.multi_n, rn.cfg.multi_m
    actors = [r.Actor.remote() for _ in range(_servers(rn.cfg))]
    try:

        def actor_multi2():
            ray.get([r.work.remote(actors, n) for _ in range(m)])

        rn.timeit("n_n_actor_calls_async", actor_multi2, m * n)
    finally:
        rn.kill(*actors)


def _creation_round(rn, k):
    """Actors per second to create ``k`` actors and get one answer from each."""
    ray, r = rn.ray, rn.r
    t0 = time.perf_counter()
    actors = [r.Actor.remote() for _ in range(k)]
    ray.get([a.small_value.remote() for a in actors])
    dt = time.perf_counter() - t0
    rn.kill(*actors)
    del actors
    gc.collect()
    time.sleep(_KILL_SETTLE_S)
    return k / dt


def actor_creation(rn):
    """Create N num_cpus=0 actors and wait until each answered one call.

    The rate is actors per second over the create+first-call span; the
    actors are killed (outside the timed span) after each round.
    """
    cfg = rn.cfg
    n = cfg.creation_n
    _creation_round(rn, max(1, n // 4))  # warm-up, with a quarter of the actors
    stats = []
    budget_start = time.perf_counter()
    while len(stats) < cfg.creation_rounds:
        stats.append(_creation_round(rn, n))
        # Two rounds at least, so that the spread means something.
        if len(stats) >= 2 and time.perf_counter() - budget_start > cfg.creation_budget_s:
            break
    rn.record_rate("actor_creation", stats)
    rn.results["actor_creation"]["actors_per_round"] = n


METRICS = {
    "1_1_actor_calls_sync": one_one_actor_calls_sync,
    "1_1_actor_calls_async": one_one_actor_calls_async,
    "1_1_actor_calls_concurrent": one_one_actor_calls_concurrent,
    "1_n_actor_calls_async": one_many_actor_calls_async,
    "n_n_actor_calls_async": many_many_actor_calls_async,
    "1_1_async_actor_calls_sync": one_one_async_actor_calls_sync,
    "1_1_async_actor_calls_async": one_one_async_actor_calls_async,
    "actor_creation": actor_creation,
}
