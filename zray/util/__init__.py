"""zray.util: helpers beyond the core API (as ray.util): state (list_objects), placement
groups and scheduling strategies."""
from . import scheduling_strategies, state
from .placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = ["get_current_placement_group", "get_placement_group", "placement_group",
           "placement_group_table", "remove_placement_group", "scheduling_strategies", "state"]
