"""A first zray program: tasks, futures, an actor and wait(), on the embedded cluster.

    python examples/quickstart.py
"""
import random
import time

import zray as ray  # a Ray Core program runs unchanged with this import


@ray.remote
def sample(n: int, seed: int) -> int:
    """Points of n random ones that fall inside the unit quarter circle."""
    rng = random.Random(seed)
    return sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(n))


@ray.remote
class Progress:
    def __init__(self):
        self.done = 0

    def add(self, k: int) -> int:
        self.done += k
        return self.done


def main() -> None:
    t0 = time.perf_counter()
    ray.init()
    print(f"cluster up in {time.perf_counter() - t0:.2f} s: {ray.cluster_resources()}")

    progress = Progress.remote()
    n, chunks = 200_000, 16
    refs = [sample.remote(n, seed) for seed in range(chunks)]
    inside, pending = 0, refs
    while pending:  # use results as they arrive
        ready, pending = ray.wait(pending, num_returns=1, timeout=30)
        inside += ray.get(ready[0])
        ray.get(progress.add.remote(1))
    print(f"pi ~ {4 * inside / (n * chunks):.5f} from {chunks} tasks, "
          f"{ray.get(progress.add.remote(0))} reported to the actor")

    t1 = time.perf_counter()
    ray.get([sample.remote(1, i) for i in range(10_000)])
    dt = time.perf_counter() - t1
    print(f"10,000 tiny tasks in {dt:.2f} s ({10_000 / dt:,.0f} tasks/s)")
    print(f"total {time.perf_counter() - t0:.2f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
