"""zray.util: helpers beyond the core API (as ray.util): ActorPool, as_completed,
map_unordered, list_named_actors, state; zray.util.queue and zray.util.multiprocessing
are imported on use (as Ray's)."""
from . import scheduling_strategies, state
from .actor_pool import ActorPool
from .helpers import as_completed, map_unordered
from .placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from .state import list_named_actors

__all__ = ["ActorPool", "as_completed", "list_named_actors", "map_unordered", "state"]
__all__ += ["get_current_placement_group", "get_placement_group", "placement_group",
            "placement_group_table", "remove_placement_group", "scheduling_strategies"]
