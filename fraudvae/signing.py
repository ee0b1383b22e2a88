"""Optional model signing: an HMAC-SHA256 of a model directory's file digests, with a key the
deployment holds (``FRAUDVAE_MODEL_KEY``, or a file named by ``FRAUDVAE_MODEL_KEY_FILE``).

The manifest's digests make a model tamper-evident to a reader that trusts the manifest; anyone
who can write the directory can also rewrite the manifest. With a key configured, `fit` signs what it
writes and loading refuses a model whose signature is missing or does not match: only a holder of
the key can produce a model that loads."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from fraudvae.errors import ConfigError, ModelFileError

SIGNATURE = "signature.json"
ALGORITHM = "hmac-sha256"


def model_key() -> bytes | None:
    """The configured signing key, or None when none is configured."""
    text = os.environ.get("FRAUDVAE_MODEL_KEY")
    if text is None and os.environ.get("FRAUDVAE_MODEL_KEY_FILE"):
        name = os.environ["FRAUDVAE_MODEL_KEY_FILE"]
        try:
            text = Path(name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as e:
            raise ConfigError(f"FRAUDVAE_MODEL_KEY_FILE={name!r} cannot be read ({e.__class__.__name__})") from None
    if text is None:
        return None
    if not text.strip():
        raise ConfigError("the model signing key (FRAUDVAE_MODEL_KEY or its file) is empty")
    return text.encode()


def signature(digests: dict[str, str], key: bytes) -> str:
    return hmac.new(key, json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def write_signature(directory: Path, digests: dict[str, str], key: bytes) -> None:
    tmp = directory / f".{SIGNATURE}.{os.getpid()}.tmp"  # written whole, then renamed into place
    tmp.write_text(json.dumps({"algorithm": ALGORITHM, "signature": signature(digests, key)}))
    os.replace(tmp, directory / SIGNATURE)


def check_signature(directory: Path, digests: dict[str, str], key: bytes | None) -> None:
    """Refuse the model unless it carries a valid signature (no key configured: nothing to check)."""
    if key is None:
        return
    try:
        found = json.loads((directory / SIGNATURE).read_text())
        given = found["signature"] if found.get("algorithm") == ALGORITHM else ""
    except FileNotFoundError:
        raise ModelFileError(f"model directory {str(directory)!r} is not signed, and a signing key is configured "
                             "(fraudvae sign --model DIR signs it)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        given = ""
    if not isinstance(given, str) or not hmac.compare_digest(given, signature(digests, key)):
        raise ModelFileError(f"model directory {str(directory)!r}: its signature does not match (modified, or "
                             "signed with another key)")
