"""The clients and the user the server creates at startup; no Django import, so the tests can
use them too.

Every secret holds ``:``, ``%``, ``+`` and a space, and a literal ``%2B``: RFC 6749 section
2.3.1 has the client form-urlencode the id and the secret before HTTP Basic, and DOT
``unquote_plus``-es them, so a client that skips the encoding (or encodes twice) is refused.
"""

from __future__ import annotations

USERNAME = "alice"
SCOPE = "read write"

# Confidential, authorization_code clients (their grants are minted by POST /test/grant).
BASIC_CLIENT_ID = "basic-client"
BASIC_CLIENT_SECRET = "basic:se%cr+et with space %2B"
POST_CLIENT_ID = "post-client"
POST_CLIENT_SECRET = "post:se%cr+et with space %2B"
# A confidential client_credentials client.
CC_CLIENT_ID = "machine-client"
CC_CLIENT_SECRET = "machine:se%cr+et with space %2B"

# The access token lifetime the server is configured with (OAUTH2_PROVIDER's
# ACCESS_TOKEN_EXPIRE_SECONDS).
ACCESS_TOKEN_TTL = 2
