"""A node's resources: what it offers in total, what is free now, and which GPU ids
are free. Pure accounting; _tasks and _mailboxes decide who takes what."""
from __future__ import annotations

# Amounts are floats (num_cpus=0.5, three tasks of 1/3): a request that needs at
# most this much more than what is free still fits (rounding, not capacity).
ROUNDING = 1e-9


class Resources:
    """total and avail map resource names to amounts; avail["CPU"] may go below 0
    only by CPU that workers blocked in get() lent out (see lend_cpu)."""

    __slots__ = ("total", "avail", "free_gpus")

    def __init__(self, total: dict) -> None:
        self.total = {k: float(v) for k, v in total.items()}
        self.avail = dict(self.total)
        self.free_gpus = list(range(int(self.total.get("GPU", 0))))

    def feasible(self, res: dict) -> bool:
        """True if this node could ever give `res` (its totals are large enough)."""
        return all(self.total.get(k, 0.0) >= v for k, v in res.items() if v)

    def fits(self, res: dict) -> bool:
        """True if `res` is free now."""
        avail = self.avail
        for k, v in res.items():
            if v and avail.get(k, 0.0) < v - ROUNDING:
                return False
        return True

    def take(self, res: dict) -> list:
        """Take `res` (the caller checked that it fits); the GPU ids that go with it."""
        for k, v in res.items():
            if v:
                self.avail[k] = self.avail.get(k, 0.0) - v
        n = int(res.get("GPU", 0) or 0)
        gpus, self.free_gpus = self.free_gpus[:n], self.free_gpus[n:]
        return gpus

    def give(self, res: dict, gpus: list) -> None:
        """Give back what take() gave (without the CPU a blocked worker lent)."""
        for k, v in res.items():
            if v:
                self.avail[k] = self.avail.get(k, 0.0) + v
        self.free_gpus.extend(gpus)

    def lend_cpu(self, cpu: float) -> None:
        """A worker blocks in get(): the CPU it holds runs other work meanwhile, so that
        nested tasks never deadlock a full node."""
        self.avail["CPU"] = self.avail.get("CPU", 0.0) + cpu

    def reclaim_cpu(self, cpu: float) -> None:
        """The blocked worker resumes: it takes its CPU back (avail may go below 0
        until the work that used it ends)."""
        self.avail["CPU"] = self.avail.get("CPU", 0.0) - cpu


def shape_of(res: dict) -> tuple:
    """The key of a resource request: requests of one shape share a queue and a lease."""
    return tuple(sorted((k, v) for k, v in res.items() if v))


def actor_demand(res: dict) -> dict:
    """What an actor needs free to be placed. Ray's default (the spec says
    "_default_cpu"): 1 CPU to be placed, none held while it lives (actor_holds)."""
    res = dict(res)
    if res.pop("_default_cpu", None):
        res["CPU"] = max(res.get("CPU", 0), 1)
    return res


def actor_holds(res: dict) -> dict:
    """What an actor holds while it lives."""
    return {k: v for k, v in res.items() if k != "_default_cpu"}
