"""API keys: where they come from, how a presented key is recognised, how one is made.

Only the SHA-256 digest of a key is ever stored or configured. A presented key is
hashed and compared with every configured digest by ``hmac.compare_digest`` (no early
exit), so neither the comparison nor the lookup tells a guesser how close it came. A key
never appears in a log line, an error message or a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ...config import API_KEY_ID_PATTERN, ApiKeyConfig, Config, ConfigError, parse_api_keys

#: Environment variable holding a JSON list of key entries (for containers).
API_KEYS_ENV: Final = "TTS_STREAMER_API_KEYS"
#: Prefix of the keys ``create_key`` makes, so a leaked one is recognisable in a scan.
KEY_PREFIX: Final = "tts_"
#: Random bytes in a new key: 256 bits, beyond any guessing.
KEY_RANDOM_BYTES: Final = 32
#: Limits ``tts-streamer keys create`` writes unless told otherwise: a few voice-agent
#: conversations at once, and ~10 minutes of speech per minute (speech is ~900
#: characters a minute), far above one honest client and far below a flood.
DEFAULT_MAX_SESSIONS: Final = 10
DEFAULT_CHARS_PER_MINUTE: Final = 10_000


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key, by digest, with its limits and rights."""

    id: str
    digest: bytes
    #: 0 = no limit of its own.
    max_sessions: int = 0
    #: 0 = no limit.
    chars_per_minute: int = 0
    admin: bool = False

    @classmethod
    def from_config(cls, entry: ApiKeyConfig) -> ApiKey:
        return cls(
            id=entry.id,
            digest=bytes.fromhex(entry.sha256),
            max_sessions=entry.max_sessions,
            chars_per_minute=entry.chars_per_minute,
            admin=entry.admin,
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a key (``None`` when the server has no keys: then everyone is the
    same local user and sees everything), and whether it came as a token."""

    key: ApiKey | None
    #: Authenticated by a short-lived token, not the key itself (it cannot mint tokens).
    by_token: bool = False

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    def can_see(self, owner: Caller) -> bool:
        """May this caller see, interrupt and delete a session ``owner`` created?"""
        return self.admin or (self.key_id is not None and owner.key_id == self.key_id)


#: Everyone, on a server with no keys.
ANONYMOUS: Final = Caller(None)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyStore:
    """The configured keys; ``find`` recognises a presented one."""

    def __init__(self, keys: Sequence[ApiKey] = ()) -> None:
        self._keys = tuple(keys)
        self._by_id: dict[str, ApiKey] = {}
        for key in self._keys:
            if key.id in self._by_id:
                raise ConfigError(
                    f"config key 'security.api_keys': key id {key.id!r} is configured twice"
                )
            self._by_id[key.id] = key
        if len({key.digest for key in self._keys}) != len(self._keys):
            raise ConfigError(
                "config key 'security.api_keys': two entries have the same sha256 (one key, "
                "two ids)"
            )

    @classmethod
    def load(cls, config: Config, environ: Mapping[str, str]) -> KeyStore:
        """Keys from ``security.api_keys``, ``security.api_keys_file`` and
        ``$TTS_STREAMER_API_KEYS``, together. Raises ``ConfigError`` naming the source."""
        entries = list(config.security.api_keys)
        path = config.security.api_keys_file
        if path is not None:
            source = f"security.api_keys_file ({config.path(path)})"
            try:
                text = config.path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"config key {source}: cannot read it: {exc.strerror}") from None
            entries += parse_api_keys(_json(text, source), source)
        raw = environ.get(API_KEYS_ENV)
        if raw:
            source = f"${API_KEYS_ENV}"
            entries += parse_api_keys(_json(raw, source), source)
        return cls([ApiKey.from_config(entry) for entry in entries])

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    def find(self, presented: str) -> ApiKey | None:
        """The key whose digest matches ``presented``'s, or None. Every entry is
        compared, in constant time each, whatever matched."""
        digest = key_digest(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def _json(text: str, source: str) -> object:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{source}: must be a JSON list of key entries like security.api_keys")
    return data


def create_key(
    key_id: str,
    *,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    chars_per_minute: int = DEFAULT_CHARS_PER_MINUTE,
    admin: bool = False,
) -> tuple[str, dict[str, object]]:
    """A new random key and its config entry (for ``security.api_keys``, a key file or
    ``$TTS_STREAMER_API_KEYS``). The key is shown once; only its digest is kept. Raises
    ``ValueError`` for an id or limit the config would refuse."""
    if API_KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise ValueError(
            f"key id {key_id!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    if max_sessions < 0 or chars_per_minute < 0:
        raise ValueError("limits must be >= 0 (0 = no limit)")
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    entry: dict[str, object] = {
        "id": key_id,
        "sha256": key_digest(key).hex(),
        "max_sessions": max_sessions,
        "chars_per_minute": chars_per_minute,
        "admin": admin,
    }
    parse_api_keys([entry], "keys create")  # what the server will check, checked now
    return key, entry
