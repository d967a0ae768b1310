"""Fixtures shared by the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture
def pulumi_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A current event loop for a test that makes Pulumi Outputs or runs Pulumi's mocks.

    Both take the main thread's current loop (`asyncio.get_event_loop()`). An earlier test in
    the same process that ran `asyncio.run()` leaves the main thread without one (it sets the
    loop to None when it ends), so which tests failed depended on how xdist ordered them."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
