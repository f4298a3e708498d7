"""Gate: an async actor whose wait() calls return only once release() was called, so
that tests order completions by events instead of sleeps."""
from __future__ import annotations

import asyncio

import zray


@zray.remote
class Gate:
    def __init__(self):
        self.opened = asyncio.Event()

    async def wait(self, value="released"):
        await self.opened.wait()
        return value

    async def release(self):
        self.opened.set()
