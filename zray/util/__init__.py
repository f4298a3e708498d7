"""zray.util: helpers beyond the core API (as ray.util): ActorPool, as_completed,
map_unordered, list_named_actors, state, metrics, get_node_ip_address,
inspect_serializability, register_serializer; zray.util.queue and
zray.util.multiprocessing are imported on use (as Ray's)."""
from . import check_serialize, metrics, scheduling_strategies, serialization, state
from ._node_ip import get_node_ip_address
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .helpers import as_completed, map_unordered
from .placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from .serialization import deregister_serializer, register_serializer
from .state import list_named_actors

__all__ = ["ActorPool", "as_completed", "list_named_actors", "map_unordered", "state"]
__all__ += ["get_current_placement_group", "get_placement_group", "placement_group",
            "placement_group_table", "remove_placement_group", "scheduling_strategies"]
__all__ += ["check_serialize", "deregister_serializer", "get_node_ip_address",
            "inspect_serializability", "metrics", "register_serializer", "serialization"]
