"""Task workloads: one client submitting tasks one by one or in batches, and
several clients (actors) submitting batches of tasks at once."""


def single_client_tasks_sync(rn):
    ray, r = rn.ray, rn.r

    def small_task():
        ray.get(r.small_value.remote())

    rn.timeit("single_client_tasks_sync", small_task)


def single_client_tasks_async(rn):
    ray, r = rn.ray, rn.r
    n = rn.cfg.batch

    def small_task_async():
        ray.get([r.small_value.remote() for _ in range(n)])

    rn.timeit("single_client_tasks_async", small_task_async, n)


def multi_client_tasks_async(rn):
    """``multi_n`` tasks from each of ``multi_m`` client actors (Ray's batch is 10x bigger)."""
    ray, r = rn.ray, rn.r
    n, m = rn.cfg.multi_n, rn.cfg.multi_m
    actors = [r.Actor.remote() for _ in range(m)]
    ray.get([a.small_value.remote() for a in actors])
    try:

        def multi_task():
            ray.get([a.small_value_batch.remote(n) for a in actors])

        rn.timeit("multi_client_tasks_async", multi_task, n * m)
    finally:
        rn.kill(*actors)


def generator_items(rn):
    """A generator task's items (``batch`` per task), each got as it arrives."""
    ray, r = rn.ray, rn.r
    n = rn.cfg.batch

    def stream():
        for ref in r.items.remote(n):
            ray.get(ref)

    rn.timeit("generator_items", stream, n)


METRICS = {
    "single_client_tasks_sync": single_client_tasks_sync,
    "single_client_tasks_async": single_client_tasks_async,
    "multi_client_tasks_async": multi_client_tasks_async,
    "generator_items": generator_items,
}
