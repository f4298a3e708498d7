"""A borrower that ends without giving back what it borrowed (killed, crashed, or a
driver that exits) is released by its node: what only it kept alive is freed (an
actor whose handle it held ends; a stored object's segment goes). Before, its holds
stayed with the owner for good."""
from __future__ import annotations

import os

import numpy as np
from conftest import wait_until
from helpers import Counter, Holder, T, run_driver, wait_exit

import zray


@zray.remote(num_cpus=0)
class Keeper:
    def keep(self, box):
        self.box = box      # a ref inside a list: borrowed, not resolved
        return True

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)


def test_an_actor_held_only_by_a_killed_borrower_ends(shared):
    target = Counter.options(num_cpus=0).remote()
    pid = zray.get(target.pid.remote(), timeout=T)
    holder = Holder.options(num_cpus=0).remote()
    zray.get(holder.hold.remote([target]), timeout=T)
    del target   # the holder's handle keeps it alive
    assert zray.get(holder.other_pid.remote(), timeout=T) == pid
    zray.kill(holder)
    assert wait_exit(pid, timeout=T), "the actor outlived the only process that held it"


def test_an_object_held_only_by_a_crashed_borrower_is_freed(shared):
    ref = zray.put(np.ones(1_000_000))   # 8 MB: a segment in /dev/shm
    entry = zray._runtime.current().owner.table.entries[ref._id]
    path = "/dev/shm/" + entry.data[1]
    keeper = Keeper.remote()
    assert zray.get(keeper.keep.remote([ref]), timeout=T)
    del ref, entry
    assert os.path.exists(path)   # kept by the keeper's ref
    keeper.die.remote()
    assert wait_until(lambda: not os.path.exists(path), T), "the segment outlived its borrower"


def test_a_borrowing_driver_that_exits_releases_its_holds(shared, tmp_path):
    target = Counter.options(num_cpus=0, name="lent", namespace="borrowers").remote()
    pid = zray.get(target.pid.remote(), timeout=T)
    address = zray._runtime.current().node_info["session_dir"]
    run_driver(tmp_path, f"""
        import zray
        zray.init(address={address!r}, namespace="borrowers")
        lent = zray.get_actor("lent")    # a handle of its own: it borrows the actor
        assert zray.get(lent.incr.remote(1)) == 1
    """)   # and exits holding it
    del target
    assert wait_exit(pid, timeout=T), "the actor outlived its creator's handle and the driver"
