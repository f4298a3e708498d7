"""get_node_ip_address(): the address of the node this process runs on (as
ray.util.get_node_ip_address)."""
from __future__ import annotations

from typing import Any

__all__ = ["get_node_ip_address"]


def get_node_ip_address(address: Any = None) -> str:
    """The IP address of this process's node, as the cluster knows it (the address
    `zray.nodes()` gives as NodeManagerAddress: 127.0.0.1 for the embedded cluster of
    init(), the --node-ip-address of a `zray start` node). Outside a cluster (before
    init), the address this machine's route toward `address` ("host:port"; default:
    its default route) leaves from, as Ray's. Never starts a cluster."""
    from .._context import runtime
    rt = runtime()
    if rt is not None:
        ip = rt.node_info.get("ip")
        if type(ip) is str and ip:
            return ip
        from .. import _api  # (a node that does not say it: the head's table)
        node_id = rt.node_id.hex()
        for node in _api.nodes():
            if node["NodeID"] == node_id:
                return str(node["NodeManagerAddress"])
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a 'host:port' string or None, got {type(address).__name__}")
    from .._daemons import default_ip
    return default_ip(address.rsplit(":", 1)[0] if address else None)
