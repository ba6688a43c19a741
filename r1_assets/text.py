"""Text normalisation and the stable problem id shared by every stage."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The stored form: NFC, no control characters, single spaces, at most one blank line.

    NFC rather than NFKC: NFKC folds superscripts and other math symbols (x² -> x2),
    which changes a problem's meaning.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = "\n".join(_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def problem_key(text: str) -> str:
    """The identity of a problem: NFKC, case-folded, all whitespace collapsed.

    Two texts with the same key are exact duplicates.
    """
    return _ANY_SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def problem_id(text: str) -> str:
    """Stable 64-bit hex id of a problem, the same across runs and machines."""
    return hashlib.blake2b(problem_key(text).encode("utf-8"), digest_size=8).hexdigest()


def stable_hash(*parts: object, size: int = 8) -> str:
    """Hex digest of parts joined by a separator that cannot appear in them unescaped."""
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=size).hexdigest()
