from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorServer

from .helpers import Control, WebhookReceiver, make_receiver, sdk_client


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        port=0,
        webhook_retry_base=0.05,
        webhook_retry_max=0.2,
        webhook_max_attempts=4,
        webhook_timeout=2.0,
        scheduler_interval=0.2,
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def url(emulator: EmulatorServer) -> str:
    return emulator.url


@pytest.fixture(scope="session")
def control_session(url: str) -> Iterator[Control]:
    control = Control(url)
    yield control
    control.close()


@pytest.fixture(autouse=True)
def control(control_session: Control) -> Control:
    """Every test starts from an empty emulator with default settings."""
    control_session.reset()
    return control_session


@pytest.fixture
def client(url: str) -> Iterator[stripe.StripeClient]:
    with sdk_client(url) as sdk:
        yield sdk


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    state, server = make_receiver()
    import threading

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()
