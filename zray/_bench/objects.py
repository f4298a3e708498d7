"""Object store workloads: small get/put/wait from one client, and the 100 MB
metrics (put, get, put+get of a numpy array, a task on a ref to one)."""

# Size of the "100 MB" array: 100 MiB, or 10 MiB with --quick.
_LARGE_MIB, _LARGE_MIB_QUICK = 100, 10
_FLOAT64_BYTES = 8


def single_client_get_calls(rn):
    ray = rn.ray
    value = ray.put(0)

    def get_small():
        ray.get(value)

    rn.timeit("single_client_get_calls", get_small)


def single_client_put_calls(rn):
    ray = rn.ray

    def put_small():
        ray.put(0)

    rn.timeit("single_client_put_calls", put_small)


def single_client_wait_1k_refs(rn):
    """Drain ``cfg.batch`` refs that are *already ready* with ``wait(num_returns=1)``.

    One iteration is one drain (``cfg.batch`` wait calls); Ray's script also
    submits the 1000 tasks inside the timed function.
    """
    ray, r = rn.ray, rn.r
    refs = [r.small_value.remote() for _ in range(rn.cfg.batch)]
    ray.get(refs)  # all ready from here on

    def wait_multiple_refs():
        not_ready = refs
        while not_ready:
            _ready, not_ready = ray.wait(not_ready, num_returns=1)

    rn.timeit("single_client_wait_1k_refs", wait_multiple_refs)


def _array_100mb(cfg):
    import numpy as np  # not at module level: only these metrics need it

    mib = _LARGE_MIB_QUICK if cfg.quick else _LARGE_MIB
    return np.arange(mib * 2**20 // _FLOAT64_BYTES, dtype=np.float64)


def single_client_put_gigabytes(rn):
    ray = rn.ray
    arr = _array_100mb(rn.cfg)
    gb = arr.nbytes / 1e9

    def put_large():
        ray.put(arr)  # the ref is dropped at once: the store is freed as it goes

    rn.timeit("single_client_put_gigabytes", put_large, gb)


def single_client_get_100mb_calls(rn):
    ray = rn.ray
    ref = ray.put(_array_100mb(rn.cfg))

    def get_large():
        ray.get(ref)

    rn.timeit("single_client_get_100mb_calls", get_large)


def put_get_100mb_gigabytes(rn):
    ray = rn.ray
    arr = _array_100mb(rn.cfg)
    gb = arr.nbytes / 1e9

    def put_get():
        ray.get(ray.put(arr))

    rn.timeit("put_get_100mb_gigabytes", put_get, gb)


def task_100mb_ref_arg(rn):
    ray, r = rn.ray, rn.r
    ref = ray.put(_array_100mb(rn.cfg))

    def task_on_ref():
        ray.get(r.first_item.remote(ref))

    rn.timeit("task_100mb_ref_arg", task_on_ref)


METRICS = {
    "single_client_get_calls": single_client_get_calls,
    "single_client_put_calls": single_client_put_calls,
    "single_client_wait_1k_refs": single_client_wait_1k_refs,
    "single_client_put_gigabytes": single_client_put_gigabytes,
    "single_client_get_100mb_calls": single_client_get_100mb_calls,
    "put_get_100mb_gigabytes": put_get_100mb_gigabytes,
    "task_100mb_ref_arg": task_100mb_ref_arg,
}
