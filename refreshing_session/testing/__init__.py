"""A real local OAuth2 authorization server and protected API for tests.

:class:`LocalAuthServer` speaks plain HTTP/1.1 on a free loopback port and
behaves like production servers (Okta, Auth0, oidc-provider): rotating
single-use refresh tokens with reuse detection, RFC 6749 client
authentication, RFC 6750 bearer challenges, the RFC 8628 device authorization
grant, RFC 7009 revocation, DPoP (RFC 9449) with bound tokens, proof checks and nonces, plus
fault injection for the token endpoint.

It is as harsh about time as real servers are: by default an access token's
expiry is counted from the whole second it was issued in (as oidc-provider
does), so a token answered with ``expires_in`` 2 may die 1.01 s after it was
issued (lifetimes under 2 s are counted exactly); access tokens can be revoked
early, all at once; the server's clock can run ahead of or behind the caller's;
and every access token can be made to die at a random moment of its lifetime.

The package's modules, each importing only those listed before it:
``messages`` (request and response values), ``checks`` (argument checks),
``transport`` (the HTTP plumbing), ``dpop`` (the DPoP proof checks, nonces
and record), ``oauth`` (the OAuth state, no sockets),
``faults`` (fault injection for the token endpoint) and ``server`` (the
:class:`LocalAuthServer` facade). Only the names exported here are public.

This package deliberately imports nothing from the rest of
``refreshing_session``: a bug in the client must not be able to hide the same
bug here. The one exception is :class:`MemoryStore` (``memory_store``), a token
store for the client's side of a test, loaded only when it is asked for.
"""

from typing import TYPE_CHECKING

from .dpop import DPoPProof
from .oauth import ServerStats
from .server import LocalAuthServer, TokenCall

if TYPE_CHECKING:
    from .memory_store import MemoryStore

__all__ = ["DPoPProof", "LocalAuthServer", "MemoryStore", "ServerStats", "TokenCall"]


def __getattr__(name: str) -> object:
    # MemoryStore imports the client: loading it lazily keeps the server apart from it.
    if name == "MemoryStore":
        from .memory_store import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
