"""Pseudonymisation: identifiers become keyed HMAC-SHA256 tokens before they leave ingestion."""

from __future__ import annotations

import hashlib
import hmac

TOKEN_HEX_CHARS = 32


def token(key: bytes, namespace: str, identifier: str) -> str:
    """A stable, non-reversible token for `identifier` within `namespace` (e.g. a facility's MRN
    space). Without the key the token cannot be recomputed from a guessed identifier."""
    if not key:
        raise ValueError("an HMAC key is required to tokenise identifiers")
    msg = f"{namespace}\x1f{identifier}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]
