"""Request and response shapes: parsed as whole batches, documented in OpenAPI.

Per-row pydantic models cost tens of microseconds a row; a request is instead decoded once by
msgspec into typed columns and its values are checked column by column by the library
(`FraudVAE.encode_columns`), with the same strictness: numbers must be finite JSON numbers, NaN and
Infinity are refused, ``null`` is a missing value. The OpenAPI document still lists every column
the model reads, with its type.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
from msgspec.structs import astuple

from fraudvae import FraudVAE

from .batching import Batch
from .errors import ServiceError
from .keys import key_counts, key_signatures

MAX_ID_CHARS = 256
PROOF_BYTES = 2048  # from this size on, a body is first tried for the fast proof that it is plain (`_plain`)
# deepest JSON nesting a body may have: a request is 3 deep (body, list, row); the rest is room for
# ignored extra fields. Held here, not left to the parser: how deep msgspec and Python's json go
# before a RecursionError depends on the interpreter (about 1,000 on 3.11; 5,000 passed on 3.12)
MAX_JSON_DEPTH = 64
# an id is echoed back, so it must be one the response can carry: a bounded string, a 64-bit integer, null
ID_TYPE = (Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
           | Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None)


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


class RequestDecoder:
    """Decodes ``{"transactions": [...]}`` for one model straight into typed columns.

    msgspec checks every value's JSON type in C while it parses (a number where a number belongs,
    no NaN or Infinity, no number beyond a double), far faster than per-row pydantic models; the
    library then checks values (finite, known flags) column by column. A body msgspec refuses for
    its syntax is parsed again leniently and checked against the same types, so that NaN or
    Infinity reach the library's check and are reported with their place."""

    ROLE_TYPES: dict[str, Any] = {
        "numeric": float | None,
        "binary": bool | int | float | str | None,
        "categorical": str | int | float | bool | None,
        "time": str | int | float | None,  # the training file's date-time text, or epoch seconds
    }

    def __init__(self, detector: FraudVAE, max_rows: int) -> None:
        self.max_rows = max_rows
        schema = detector.schema_
        # what a request sends: the model's columns, less the history features (the service derives
        # them from its state store), plus the entity columns the history reads
        history = detector.history_
        derived = set(history.spec.names()) if history is not None else set()
        columns = [(c.name, self.ROLE_TYPES[c.role]) for c in schema.columns if c.name not in derived]
        if history is not None:
            columns += [(e, str | int | None) for e in history.spec.entities]
        self.names = [name for name, _ in columns]
        self.id_field = schema.id_column or "id"
        # attribute names f0, f1, ... renamed to the columns: any column name works
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [(f"f{i}", kind) for i, (_, kind) in enumerate(columns)]
        rename = {f"f{i}": name for i, (name, _) in enumerate(columns)}
        if self.id_field not in self.names:
            fields.append(("row_id", ID_TYPE, None))
            rename["row_id"] = self.id_field
        self.id_attr = next(k for k, v in rename.items() if v == self.id_field)
        self.id_optional = self.id_field not in self.names
        # a struct's fields in order (astuple): the columns, then the id when it is no column
        self.id_index = len(self.names) if self.id_optional else self.names.index(self.id_field)
        # gc=False: a transaction holds only scalars (no cycle), so the collector need not track
        # a thousand of them per request
        transaction = msgspec.defstruct("Transaction", fields, rename=rename, gc=False)
        request = msgspec.defstruct("ScoreRequest", [("transactions", list[transaction])])  # type: ignore[valid-type]
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request)
        # each field's key as it appears in a body (for spotting a key given twice in a transaction)
        self.keys = [orjson.dumps(name) for name in rename.values()]
        self.signatures = key_signatures(self.keys)

    def decode(self, body: bytes) -> Batch:
        try:
            request = self.decoder.decode(body)
        except msgspec.ValidationError as e:
            raise _validation_error(str(e)) from None
        except UnicodeDecodeError as e:
            raise ServiceError(400, f"the body is not valid UTF-8: byte 0x{e.object[e.start]:02x} at offset {e.start} "
                                    "(send JSON encoded as UTF-8)") from None
        except RecursionError:
            raise _too_deep() from None
        except msgspec.DecodeError as e:  # NaN, Infinity or broken JSON: parse leniently, check the same types
            placed = _non_finite_place(self.decoder, body, e)
            if placed is not None:
                raise placed from None
            loaded = _loads_lenient(body, e)
            try:
                request = msgspec.convert(loaded, self.decoder.type)
            except msgspec.ValidationError as e2:
                raise _validation_error(str(e2)) from None
            except RecursionError:
                raise _too_deep() from None
            except UnicodeEncodeError:  # Python's parser, unlike msgspec's, lets a lone surrogate through
                raise _surrogate_error(loaded) from None
            ids = [getattr(row, self.id_attr) for row in request.transactions]
            if any(type(v) is str and not v.isascii() for v in ids):  # an id is echoed: it must be encodable
                try:
                    orjson.dumps(ids)
                except TypeError:
                    raise _surrogate_error(loaded) from None
        rows = request.transactions
        fields = list(zip(*map(astuple, rows), strict=True))  # row tuples to columns, in C
        ids = list(fields[self.id_index]) if rows else []
        if len(body) < PROOF_BYTES or not self._plain(body, ids):  # a small body: counting its keys is cheaper
            if self._maybe_repeated_key(body, len(rows)):
                _check_repeated_keys(body)
            # outside strings a flat request has one '[' and a '{' per row plus one: more, and it nests
            if body.count(b"[") + body.count(b"{") > len(rows) + 2 and (depth := json_depth(body)) > MAX_JSON_DEPTH:
                raise _too_deep(depth)
        if not rows:
            raise ServiceError(422, "'transactions' is empty: send at least one transaction", field="transactions")
        if len(rows) > self.max_rows:
            raise ServiceError(413, f"{len(rows)} transactions in one request; at most {self.max_rows} allowed",
                               field="transactions")
        columns = {name: list(fields[i]) for i, name in enumerate(self.names)}
        return Batch(columns, ids, len(rows))

    def _plain(self, body: bytes, ids: list) -> bool:
        """Whether the body provably holds nothing but the model's fields, each once in each
        transaction: then no key repeats (`{"amount": 1, "amount": 2}`, which the parser would read
        as 2, silently) and nothing nests. A proof by counting keys, fast for the bodies clients send.

        Without a backslash every '"' delimits a string, so a key is a '"' right before a ':' (a
        string that starts with ':' counts too: the count is never short), unless whitespace stands
        before the colon (no proof then). msgspec has checked that each transaction gives every
        required field, and an id decoded as not null shows its key: when the keys counted are no
        more than those plus 'transactions', each object holds exactly those, once."""
        if b"\\" in body:
            return False
        raw = np.frombuffer(body, dtype=np.uint8)
        before = raw[np.flatnonzero(raw == ord(":")) - 1]
        if (before <= ord(" ")).any():  # JSON's whitespace, the only bytes <= ' ' outside strings
            return False
        given = len(ids) - ids.count(None) if self.id_optional else 0
        return int(np.count_nonzero(before == ord('"'))) <= 1 + len(ids) * len(self.names) + given

    def _maybe_repeated_key(self, body: bytes, rows: int) -> bool:
        """Whether some object of a body that is not `_plain` might give a key twice. Each field's
        key is counted in the body (all at once, `key_counts`; key by key in a body with a
        backslash): every column is a required field, so a key that appears at most once per
        transaction cannot repeat (a key written with escapes could hide, so a body with one takes
        the exact check, as does one that names 'transactions' twice)."""
        if b"\\u" in body or body.count(b'"transactions"') > 1:
            return True
        counts = key_counts(body, self.signatures) if b"\\" not in body else None
        if counts is None:  # a backslash, or a colon this count cannot place: each key counted in the whole body
            return any(body.count(key) > rows for key in self.keys)
        return any(c > rows for c in counts)


class _Repeated(dict):
    """A JSON object that gave `key` more than once."""

    key: str = ""


def _check_repeated_keys(body: bytes) -> None:
    """422 naming the transaction and the key given twice in one JSON object: such a body is ambiguous
    (one parser takes the first value, another the last), so it is refused rather than guessed."""
    def pairs(items: list[tuple[str, Any]]) -> dict:
        out = _Repeated(items)
        if len(out) < len(items):
            seen: set[str] = set()
            for k, _ in items:
                if k in seen:
                    out.key = k
                    break
                seen.add(k)
        return out

    try:
        loaded = json.loads(body, object_pairs_hook=pairs, parse_constant=float)
    except (ValueError, RecursionError):
        return  # the decoder has already judged the body's syntax
    rows = loaded.get("transactions") if isinstance(loaded, dict) else None
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        if isinstance(row, _Repeated) and row.key:
            raise ServiceError(422, f"transaction {i}: key {row.key!r} is given more than once (ambiguous: send each "
                                    f"field once)", index=i, field=row.key)
    found = _first_repeated(loaded)
    if found:
        raise ServiceError(422, f"the body gives key {found!r} more than once in one object (ambiguous: send each "
                                f"field once)", field=found)


def _first_repeated(value: Any) -> str | None:
    if isinstance(value, _Repeated) and value.key:
        return value.key
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if (found := _first_repeated(child)) is not None:
            return found
    return None


def _too_deep(levels: int | None = None) -> ServiceError:
    """The 400 for a body nested past `MAX_JSON_DEPTH`, measured (`levels`) or found by a parser's
    RecursionError."""
    found = f"{levels} levels, " if levels is not None else ""
    return ServiceError(400, f"the body's JSON is nested too deeply: {found}at most {MAX_JSON_DEPTH}")


def json_depth(body: bytes, chunk: int = 1 << 20) -> int:
    """The deepest nesting of arrays and objects in the JSON text `body` (brackets inside strings
    not counted; a quote is escaped when an odd number of backslashes precede it). Vectorised over
    1 MiB chunks, so that a hostile 16 MiB body costs tens of MiB, not hundreds."""
    deepest = depth = 0
    quotes_so_far = 0  # parity decides whether a byte lies within a string
    run = 0  # backslashes that end the previous chunk
    for start in range(0, len(body), chunk):
        a = np.frombuffer(body, dtype=np.uint8, count=min(chunk, len(body) - start), offset=start)
        pos = np.arange(len(a), dtype=np.int64)
        # the last non-backslash at or before each byte; a run carried in counts as positions before 0
        last_other = np.maximum.accumulate(np.where(a == ord("\\"), -run - 1, pos))
        before = np.empty(len(a), dtype=np.int64)  # backslashes right before each byte
        before[0] = run
        before[1:] = pos[:-1] - last_other[:-1]
        quotes = (a == ord('"')) & (before % 2 == 0)
        outside = (np.cumsum(quotes) + quotes_so_far) % 2 == 0
        step = (((a == ord("[")) | (a == ord("{"))).astype(np.int64) - ((a == ord("]")) | (a == ord("}")))) * outside
        levels = np.cumsum(step) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        quotes_so_far += int(quotes.sum())
        run = int(len(a) - 1 - last_other[-1])
    return deepest


def _validation_error(message: str) -> ServiceError:
    """msgspec's "Expected `float | null`, got `str` - at `$.transactions[3].amount`" as a 422
    with the index and field picked out of the path."""
    what, _, path = message.partition(" - at `")
    path = path.rstrip("`")
    m = re.fullmatch(r"\$\.transactions\[(\d+)\](?:\.(.+))?", path)
    index = int(m.group(1)) if m else None
    field = m.group(2) if m else ("transactions" if path == "$.transactions" else None)
    missing = re.match(r"Object missing required field `(.+)`", what)
    if missing:
        field = missing.group(1)
    where = (f"transaction {index}" if index is not None else path or "body") + (f", field {field!r}" if field else "")
    return ServiceError(422, f"{where}: {what}", index=index, field=field)


NON_FINITE = (b"NaN", b"Infinity", b"-Infinity")


def _non_finite_place(decoder: msgspec.json.Decoder, body: bytes, error: Exception) -> ServiceError | None:
    """The common case of a body msgspec refuses, fast: a NaN or Infinity literal where a value
    belongs. The literal msgspec stopped at is swapped for a number beyond a double and the body
    decoded again in C, which names the transaction and field (the lenient parse in Python holds
    the interpreter for seconds on a 10 MB body). None when that is not the case."""
    m = re.search(r"\(byte (\d+)\)", str(error))
    if not m:
        return None
    at = int(m.group(1))
    start = at - 1 if body[at - 1: at] == b"-" else at
    token = next((t for t in NON_FINITE if body.startswith(t, start)), None)
    if token is None:
        return None
    try:
        decoder.decode(body[:start] + b"1e999" + body[start + len(token):])
    except msgspec.ValidationError as e:
        what, _, _ = str(e).partition(" - at `")
        if what != "Number out of range":
            return None
        err = _validation_error(str(e))
        where = f"transaction {err.index}" + (f", field {err.field!r}" if err.field else "")
        return ServiceError(422, f"{where}: {token.decode()} is not a number (send null for a missing value)",
                            index=err.index, field=err.field)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    return None


def _surrogate_error(loaded: Any) -> ServiceError:
    """422 naming the transaction and field that hold a lone surrogate ("\\ud800": not unicode)."""
    def bad(v: Any) -> bool:
        try:
            (v if isinstance(v, str) else repr(v)).encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True

    rows = loaded.get("transactions") if isinstance(loaded, dict) else None
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        for field, v in (row.items() if isinstance(row, dict) else []):
            if bad(field) or bad(v):
                shown = field.encode("utf-8", "backslashreplace").decode()
                return ServiceError(422, f"transaction {i}, field {shown!r}: a lone surrogate is not unicode text",
                                    index=i, field=shown)
    return ServiceError(400, "the body holds a lone surrogate (such as \\ud800), which is not unicode text")


def _loads_lenient(body: bytes, strict_error: Exception) -> Any:
    """Parse JSON that only breaks the strict grammar with NaN or Infinity, so that the row check
    (`FraudVAE.encode_columns`) can name the transaction and column; anything else is a 400."""
    def constant(name: str) -> float:
        return float(name)  # NaN, Infinity, -Infinity: refused with their place by the row check

    try:
        return json.loads(body, parse_constant=constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise ServiceError(400, f"the body is not valid JSON: {strict_error}") from None
