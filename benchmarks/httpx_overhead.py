"""The httpx common path: the cost of one API request with a valid token, per httpx client.

``python -m benchmarks.httpx_overhead [--rounds N] [--requests N]`` prints, for each client, the
median (and quartiles) of its requests per second divided by a plain ``httpx.Client`` with a fixed
Authorization header in the same round. The server runs in its own process; the clients take
turns in every round, in a rotating order, so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import httpx

from refreshing_session import OAuth2Refresher, TokenFile
from refreshing_session.httpx import RefreshingAuth, RefreshingClient

from .authserver import RunningServer, api_server, write_grant
from .stats import Spread

PLAIN = "plain httpx.Client, fixed header"
_WARMUP_REQUESTS = 50


def clients(server: RunningServer, folder: Path,
            stack: ExitStack) -> Iterator[tuple[str, httpx.Client]]:
    """The clients compared, each logged in with the same grant, closed with ``stack``."""
    path = folder / "token.json"
    token = write_grant(TokenFile(path), server.grant)
    refresher = OAuth2Refresher(server.token_url, "client", "secret")
    yield PLAIN, stack.enter_context(
        httpx.Client(headers={"Authorization": token.authorization}))
    yield "RefreshingClient", stack.enter_context(
        RefreshingClient(server.api_url, token_file=path, refresher=refresher))
    yield "RefreshingAuth on httpx.Client", stack.enter_context(httpx.Client(
        auth=RefreshingAuth(server.api_url, token_file=path, refresher=refresher)))
    authlib = _authlib_client(server, token.to_dict())
    if authlib is not None:
        yield "Authlib OAuth2Client", stack.enter_context(authlib)


def _authlib_client(server: RunningServer, token: dict[str, object]) -> httpx.Client | None:
    try:
        from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
    except ImportError:
        return None
    client: httpx.Client = OAuth2Client("client", "secret", token=token,
                                        token_endpoint=server.token_url)
    return client


def requests_per_second(send: Callable[[], object], count: int) -> float:
    """Send ``count`` requests with ``send``; return how many went per second."""
    started = time.perf_counter()
    for _ in range(count):
        send()
    return count / (time.perf_counter() - started)


def measure(rounds: int, count: int) -> dict[str, Spread]:
    """Each client's requests per second over the plain client's, per round, summarised."""
    with api_server(access_ttl=3600.0) as server, tempfile.TemporaryDirectory() as folder, \
            ExitStack() as stack:
        named = dict(clients(server, Path(folder), stack))
        url = server.api_url + "items"
        for client in named.values():
            requests_per_second(partial(_get, client, url), _WARMUP_REQUESTS)
        ratios: dict[str, list[float]] = {name: [] for name in named}
        order = list(named)
        for round_number in range(rounds):
            turn = order[round_number % len(order):] + order[:round_number % len(order)]
            speeds = {name: requests_per_second(partial(_get, named[name], url), count)
                      for name in turn}
            for name, speed in speeds.items():
                ratios[name].append(speed / speeds[PLAIN])
    return {name: Spread.of(values) for name, values in ratios.items()}


def _get(client: httpx.Client, url: str) -> None:
    client.get(url).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.httpx_overhead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300, help="per client and round")
    options = parser.parse_args(argv)
    for name, spread in measure(options.rounds, options.requests).items():
        print(f"{name:34} {spread.median:5.2f} x plain  (quartiles {spread.low:.2f}-"
              f"{spread.high:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
