"""zray.util.multiprocessing: multiprocessing.Pool's API on zray actors (as
ray.util.multiprocessing). `from zray.util.multiprocessing import Pool` is the one
line a multiprocessing program changes."""
from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, Pool

__all__ = ["AsyncResult", "JoinableQueue", "Pool", "TimeoutError"]
