"""How many times each of a model's keys is an object key in a request body, in one pass over the
body (`key_counts`): the proof that no transaction gives a key twice, for bodies that also carry
fields the model does not read (`schemas.RequestDecoder._maybe_repeated_key`)."""

from __future__ import annotations

import numpy as np


def key_counts(body: bytes, keys: np.ndarray) -> list[int] | None:
    """At least how many times each key (`key_signatures` of JSON strings, quotes included) is an
    object key in `body` (a JSON text without a backslash), in one pass: a fraction of the cost of
    counting each key in the whole body, which a body with fields the model does not read needs
    (`RequestDecoder._plain` proves nothing there). Without a backslash every '"' delimits a
    string, so a key is a string with a colon right after it, compared by `_signature` (two keys
    alike there are both counted: a count is never short). None when a colon outside strings has no
    '"' right before it (whitespace: the caller counts otherwise)."""
    raw = np.frombuffer(body, dtype=np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    if len(quotes) % 2 or len(quotes) and quotes[-1] == len(raw) - 1:
        return None
    colons = np.flatnonzero(raw == ord(":"))
    other = colons[raw[colons - 1] != ord('"')]  # inside a string (a time's), or a key with whitespace before its colon
    if (np.searchsorted(quotes, other) % 2 == 0).any():  # an even number of quotes before it: outside strings
        return None
    ends = np.flatnonzero(raw[quotes + 1] == ord(":"))  # a key's closing quote (or a string opening with ':')
    ends = ends[ends > 0]
    padded = np.concatenate([np.zeros(8, np.uint8), raw, np.zeros(8, np.uint8)])
    found = _signature(padded, quotes[ends - 1] + 9, quotes[ends] + 8)
    return [int(np.count_nonzero(found == k)) for k in keys]


def key_signatures(keys: list[bytes]) -> np.ndarray:
    """`_signature` of each JSON string (quotes included) without its quotes."""
    buffer = np.frombuffer(b"\0" * 8 + b"".join(keys) + b"\0" * 8, np.uint8)
    lengths = np.array([len(k) for k in keys])
    ends = np.cumsum(lengths) + 8  # each key's end in `buffer`, its closing quote the byte before
    return _signature(buffer, ends - lengths + 1, ends - 1)


_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)  # the low k bytes


def _signature(raw: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Each string raw[start:end] as one integer of its length and its first and last 8 bytes (the
    same string, the same integer); `raw` padded with 8 bytes each side."""
    length = end - start
    words = np.ndarray(shape=(len(raw) - 7,), dtype="<u8", buffer=raw, strides=(1,))  # the 8 bytes from each offset
    short = np.minimum(length, 8)
    first, last = words[start] & _LOW[short], words[end - 8] & ~_LOW[8 - short]
    with np.errstate(over="ignore"):
        return first * np.uint64(0x9E3779B97F4A7C15) ^ last * np.uint64(0xC2B2AE3D27D4EB4F) ^ length.astype(np.uint64)
