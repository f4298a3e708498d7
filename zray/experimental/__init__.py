"""Ray's `ray.experimental` names that zray has: `tqdm_ray`, progress bars for tasks and
actors drawn by the driver."""
from . import tqdm_ray

__all__ = ["tqdm_ray"]
