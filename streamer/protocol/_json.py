"""Strict JSON for everything a client sends: one decoder for the WebSocket and HTTP.

Python's ``json`` accepts more than JSON and fails in ways that are not
``JSONDecodeError``: ``NaN`` and ``Infinity`` literals, a 4301-digit integer (a
``ValueError`` from the int conversion limit), nesting deep enough for a
``RecursionError``, strings holding lone surrogates (``"\\ud800"``) that cannot be
encoded again when echoed, and duplicate keys of which the last silently wins. The
server reads the subset RFC 7493 (I-JSON) defines, plus limits of its own:

- text: UTF-8 (bytes that are not are refused before parsing);
- no ``NaN``, ``Infinity`` or ``-Infinity`` (not JSON at all, RFC 8259 §6);
- numbers of at most ``MAX_NUMBER_CHARS`` characters whose value is a finite double;
- at most ``MAX_JSON_DEPTH`` nested arrays/objects, checked before parsing;
- unique keys in every object (I-JSON §2.3: different parsers would read different
  messages);
- strings without surrogate code points or noncharacters (I-JSON §2.1).

Anything else is ``ClientError(invalid_json)``; a wrong shape is left to the caller.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Final

from ._errors import ClientError, CloseCode, ErrorCode

#: Our deepest message is two levels (``{"config": {...}}``); a bound far below the
#: interpreter's recursion limit keeps parsing off the end of the stack, wherever it runs.
MAX_JSON_DEPTH: Final = 16
#: A double needs at most 24 characters, an int64 20. Longer literals are not numbers a
#: client means, and ``int()`` of thousands of digits is quadratic (hence Python's limit).
MAX_NUMBER_CHARS: Final = 64
#: Client input quoted in an error message is cut to this many characters.
MAX_QUOTED_CHARS: Final = 40

# One token per string (closed, or running to the end of an unterminated text) or
# bracket. Possessive, and a string always ends at its quote or at the end, so each
# character is looked at once: no backtracking on hostile text.
_STRING_RE: Final = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET_RE: Final = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}
# Surrogates, and the 66 noncharacters (U+FDD0..U+FDEF and the last two of each plane).
_NOT_TEXT_RE: Final = re.compile(
    "[\\ud800-\\udfff\\ufdd0-\\ufdef"
    + "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17))
    + "]"
)


def quote(value: object) -> str:
    """``value`` as short JSON for an error message: never raises, at most
    ``MAX_QUOTED_CHARS`` characters (a client may have sent a megabyte)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 3] + "..."
    return text


def _invalid(message: str) -> ClientError:
    return ClientError(ErrorCode.INVALID_JSON, f"invalid JSON: {message}")


def _nesting_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in ``text``, ignoring brackets in strings.

    An upper bound of what the parser will reach even when ``text`` is not JSON: the
    parser fails at the first place where its reading of strings differs from this one.
    """
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _invalid(f"a number has {len(literal)} characters; the limit is {MAX_NUMBER_CHARS}")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _invalid(f"a number has {len(literal)} characters; the limit is {MAX_NUMBER_CHARS}")
    value = float(literal)
    if not math.isfinite(value):
        raise _invalid(f"the number {quote(literal)} is out of range")
    return value


def _parse_constant(name: str) -> object:
    raise _invalid(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _invalid(f"duplicate key {quote(key)}")
            seen.add(key)
    return obj


def _check_string(text: str) -> None:
    if not text.isascii():
        found = _NOT_TEXT_RE.search(text)
        if found:
            raise _invalid(
                f"a string holds U+{ord(found.group()):04X}: strings must be Unicode "
                "text, without surrogates or noncharacters"
            )


def _check_strings(value: object) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                pending.append(child)
        elif isinstance(item, list):
            pending.extend(item)


def decode_json(text: str) -> object:
    """Parse ``text`` under the rules above. Raises only ``ClientError(invalid_json)``."""
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:  # else it cannot be too deep
        depth = _nesting_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise _invalid(f"nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise _invalid(f"{exc.msg} (char {exc.pos})") from None
    except (ValueError, RecursionError):
        # Not expected after the checks above; still the client's input, not our bug.
        raise _invalid("not readable") from None
    _check_strings(value)
    return value


def utf8_length(data: str | bytes) -> int:
    """Bytes ``data`` takes on the wire (a text frame is UTF-8)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


def check_message_size(data: str | bytes, max_bytes: int) -> None:
    """Refuse a message over ``max_bytes`` UTF-8 bytes (``server.max_message_bytes``).

    Raises ``ClientError(message_too_big)`` with ``close_code`` 1009: RFC 6455 §7.4.1
    names that code for "a message that is too big for it to process", and it is what
    trio-websocket already sends for messages over its own (character) limit, so a
    client sees one outcome whichever check caught the message.
    """
    size = utf8_length(data)
    if size > max_bytes:
        raise ClientError(
            ErrorCode.MESSAGE_TOO_BIG,
            f"the message has {size} bytes; the limit is {max_bytes}",
            close_code=CloseCode.MESSAGE_TOO_BIG,
        )


def parse_json_object(raw: bytes, *, max_bytes: int | None = None) -> dict[str, Any]:
    """An HTTP JSON body as a dict, under the same rules as WebSocket messages.

    An empty (or all-whitespace) body is ``{}``: every field of our REST bodies is
    optional. Raises ``ClientError``: ``message_too_big`` over ``max_bytes``,
    ``invalid_json`` for bytes that are not UTF-8 or text ``decode_json`` refuses,
    ``invalid_message`` for JSON that is not an object.
    """
    if max_bytes is not None:
        check_message_size(raw, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"the body is not UTF-8 (byte {exc.start})") from None
    if not text.strip(" \t\r\n"):
        return {}
    value = decode_json(text)
    if not isinstance(value, dict):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "the body must be a JSON object")
    return value
