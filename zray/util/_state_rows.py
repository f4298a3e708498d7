"""What every zray.util.state listing shares: the row type (Ray's columns, read as dict
keys or attributes), Ray's default limit, and `filters`."""
from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_LIMIT", "Filters", "StateRow", "filtered"]

# Ray's state API returns at most 100 rows unless told otherwise.
DEFAULT_LIMIT = 100
Filters = list[tuple[str, str, Any]] | None


class StateRow(dict):
    """One row of a state listing: a dict whose keys are also attributes (Ray's
    ActorState/NodeState allow both `row.state` and `row["state"]`)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def asdict(self) -> dict:
        return dict(self)


def filtered(rows: list, filters: Filters) -> list:
    """The rows that pass Ray's `filters`: [(column, "=" or "!=", value), ...]."""
    for key, op, value in filters or []:
        if op not in ("=", "!="):
            raise ValueError(f"filter operator must be '=' or '!=', got {op!r}")
        rows = [r for r in rows if (str(r.get(key)) == str(value)) == (op == "=")]
    return rows
