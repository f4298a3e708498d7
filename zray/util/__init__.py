"""zray.util: helpers beyond the core API (as ray.util). So far: state (list_objects)."""
from . import state

__all__ = ["state"]
