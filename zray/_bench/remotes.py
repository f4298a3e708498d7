"""The remote functions and actor classes the workloads call, built once the
backend (zray or Ray) has been imported."""

import types


def build_remotes(ray):
    """The remote functions and actor classes of ``ray`` (zray or Ray).

    They are defined inside functions and close over ``ray`` (pickled by
    reference, as a module) and each other only, so both backends ship them by
    value to their workers: no worker ever imports this module (Ray's workers
    could not, zray is not installed in Ray's interpreter).
    """
    small_value, first_item, work, items = _functions(ray)
    Actor, AsyncActor, Client = _actor_classes(ray, small_value)
    return types.SimpleNamespace(
        small_value=small_value,
        first_item=first_item,
        work=work,
        items=items,
        Actor=Actor,
        AsyncActor=AsyncActor,
        Client=Client,
    )


def _functions(ray):
    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def first_item(a):
        return float(a[0])

    @ray.remote
    def work(actors, n):
        k = len(actors)
        ray.get([actors[i % k].small_value.remote() for i in range(n)])

    @ray.remote
    def items(n):
        for _ in range(n):
            yield b"ok"

    return small_value, first_item, work, items


def _actor_classes(ray, small_value):
    import asyncio

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

        def small_value_batch(self, n):
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote
    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, x):
            return b"ok"

        async def sleep(self, s):
            await asyncio.sleep(s)

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            if not isinstance(servers, list):
                servers = [servers]
            self.servers = servers

        def small_value_batch(self, n):
            results = []
            for s in self.servers:
                results.extend([s.small_value.remote() for _ in range(n)])
            ray.get(results)

    return Actor, AsyncActor, Client
