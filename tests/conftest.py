"""Shared fixtures. Keys are generated at test time; only the public test vectors are committed."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore.session
import pytest
import uvloop

from gateway.observability import access_log
from signer import Algorithm, Keyring, Status, new_key
from tests import alone

NOW = 1_790_000_000


@pytest.fixture
def hmac_keyring() -> Keyring:
    return Keyring([new_key("h1", Algorithm.HMAC_SHA256, Status.ACTIVE, now=NOW)])


@pytest.fixture
def ed_keyring() -> Keyring:
    return Keyring([new_key("e1", Algorithm.ED25519, Status.ACTIVE, now=NOW)])


@pytest.fixture(params=[Algorithm.HMAC_SHA256, Algorithm.ED25519], ids=lambda a: a.value)
def keyring(request: pytest.FixtureRequest) -> Keyring:
    return Keyring([new_key("k1", request.param, Status.ACTIVE, now=NOW)])


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Each test leaves logging as it found it. Some configure the gateway's logging (at DEBUG,
    access lines on: `access_log.configure`), which sticks to the process; which test file runs
    next in the same process is up to the xdist scheduler, so no test may depend on it."""
    root = logging.getLogger()
    level, handlers, enabled = root.level, list(root.handlers), access_log.lines.enabled
    pinned = {name: logging.getLogger(name).level for name in access_log.PINNED_AT_WARNING}
    yield
    root.setLevel(level)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    access_log.lines.enabled = enabled
    for name, pinned_level in pinned.items():
        logging.getLogger(name).setLevel(pinned_level)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "long: a measurement that needs its window of seconds (Rate over 10 s); runs by default",
    )
    share_botocore_loader()
    basetemp = config.getoption("basetemp")
    if alone.in_xdist_worker() and basetemp:  # xdist: RUN_BASETEMP/popen-gwN
        alone.open_locks(Path(basetemp).parent)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Every test shares the machine, unless some `alone()` has it (tests/alone.py)."""
    with alone.sharing():
        return (yield)


def share_botocore_loader() -> None:
    """One botocore data loader for the whole test process, as one botocore session shares its
    own among its clients. Each S3 store a test starts makes a new (aiobotocore) session, whose
    loader would parse botocore's JSON models again (endpoints.json alone is 1.2 MB): about a
    quarter of a second of CPU per gateway, a gateway process pays it once."""
    shared = functools.cache(botocore.session.create_loader)
    setattr(botocore.session, "create_loader", shared)  # noqa: B010 - not a plain function


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The gateway runs on uvloop in production, so every async test does too: uvloop's
    transports differ from asyncio's (they do not subclass asyncio.Transport, for one)."""
    return {"uvloop": uvloop.new_event_loop}
