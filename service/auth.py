"""Optional API keys: ``Authorization: Bearer <key>`` checked against ``SCGAN_API_KEYS_FILE``.

The file holds one key per line, either the key itself or ``sha256:<64 hex digits>``
(the SHA-256 of the key, so the file need not hold secrets); blank lines and lines
starting with ``#`` are ignored. Only SHA-256 digests are kept in memory.

A presented key is hashed and its digest compared with *every* stored digest
with :func:`hmac.compare_digest`: the time taken depends on neither how much of
a key matches nor which key matched. Keys never appear in logs, metrics or
error messages; a malformed line is reported by its number, not its content.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from model.wording import count
from service.exceptions import Unauthorized

_HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


class ApiKeysError(ValueError):
    """The keys file is missing, unreadable, empty or malformed; the message is the one-line start-up failure."""


def key_digest(key: str) -> bytes:
    """SHA-256 of a key's UTF-8 bytes (what ``sha256:`` lines hold, hex-encoded)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The accepted keys, as SHA-256 digests."""

    def __init__(self, digests: list[bytes]) -> None:
        if not digests:
            raise ApiKeysError("no API keys given")
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the digests: a digest of a weak key is as good as the key
        return f"ApiKeys({count(len(self), 'key')})"

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        """Read ``path``; :class:`ApiKeysError` (one line, no key material) when it cannot be used."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ApiKeysError(f"API keys file {path} does not exist") from None
        except IsADirectoryError:
            raise ApiKeysError(f"API keys file {path} is a directory") from None
        except PermissionError:
            raise ApiKeysError(f"API keys file {path} is not readable (permission denied)") from None
        except UnicodeDecodeError:
            raise ApiKeysError(f"API keys file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ApiKeysError(f"API keys file {path} cannot be read: {exc.strerror or type(exc).__name__}") from None
        digests: list[bytes] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith(_HASH_PREFIX):
                hexdigest = line[len(_HASH_PREFIX) :].strip()
                if not _HEX_DIGEST.fullmatch(hexdigest):
                    raise ApiKeysError(
                        f"API keys file {path}, line {number}: 'sha256:' must be followed by 64 hex digits"
                    )
                digests.append(bytes.fromhex(hexdigest))
            elif any(ch.isspace() for ch in line):
                raise ApiKeysError(f"API keys file {path}, line {number}: a key cannot contain whitespace")
            else:
                digests.append(key_digest(line))
        if not digests:
            raise ApiKeysError(f"API keys file {path} holds no keys (one key, or sha256:<hex>, per line)")
        return cls(digests)

    def verify(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys; constant time in the presented key and in which key matches."""
        digest = key_digest(presented)
        matched = False
        for stored in self._digests:  # no early exit: every digest is compared
            matched |= hmac.compare_digest(digest, stored)
        return matched


_bearer = HTTPBearer(
    auto_error=False,
    description="One of the keys in the deployment's SCGAN_API_KEYS_FILE.",
)


def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Route dependency: 401 unless the request carries a valid ``Authorization: Bearer <key>``.

    Installed only when ``SCGAN_API_KEYS_FILE`` is set (see :func:`service.app.create_app`).
    """
    keys: ApiKeys = request.app.state.api_keys
    route = getattr(request.scope.get("route"), "path", request.url.path)
    if credentials is None:
        request.app.state.metrics.auth_rejected.labels(route, "missing").inc()
        raise Unauthorized("this service needs an API key: send 'Authorization: Bearer <key>'")
    if not keys.verify(credentials.credentials):
        request.app.state.metrics.auth_rejected.labels(route, "invalid").inc()
        raise Unauthorized("the API key was not accepted")


__all__ = ["ApiKeys", "ApiKeysError", "key_digest", "require_api_key"]
