"""Pseudonymisation: identifiers become keyed HMAC-SHA256 tokens before they leave ingestion."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_HEX_CHARS = 32


def token(key: bytes, namespace: str, identifier: str) -> str:
    """A stable, non-reversible token for `identifier` within `namespace` (e.g. a facility's MRN
    space). Without the key the token cannot be recomputed from a guessed identifier."""
    if not key:
        raise ValueError("an HMAC key is required to tokenise identifiers")
    msg = f"{namespace}\x1f{identifier}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]


SEALED = b"WFS1"  # marks a sealed payload: SEALED + 12-byte nonce + AES-256-GCM ciphertext


def _seal_key(key: bytes) -> bytes:
    """A key for sealing, derived from the PHI key for this one purpose."""
    if not key:
        raise ValueError("an HMAC key is required to seal payloads")
    return hmac.new(key, b"wardflow dead-letter seal v1", hashlib.sha256).digest()


def seal(key: bytes, payload: bytes, context: str) -> bytes:
    """Encrypt a payload that may hold identifiers in clear (a rejected HL7 message or FHIR
    file) before it is stored; `context` (e.g. the stage) is authenticated with it."""
    nonce = os.urandom(12)
    return SEALED + nonce + bytes(AESGCM(_seal_key(key)).encrypt(nonce, payload, context.encode()))


def unseal(key: bytes, sealed: bytes, context: str) -> bytes:
    """The original payload of `seal` (raises if the key, context or bytes are wrong)."""
    if not sealed.startswith(SEALED):
        raise ValueError("not a sealed payload")
    nonce, body = sealed[4:16], sealed[16:]
    return bytes(AESGCM(_seal_key(key)).decrypt(nonce, body, context.encode()))
