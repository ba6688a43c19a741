"""Text normalisation and the stable problem id shared by every stage."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

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


# -- the comparison form (decontamination and any other text matching) -------------------
# LaTeX commands that only style text or size delimiters: the letters inside stay, the
# command goes (``\text{ cm}`` -> `` cm``; ``\left(`` -> ``(``).
_STYLE_WRAPPERS = r"\\(?:text|mathrm|textbf|textit|textrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
_SIZING = r"\\(?:left|right|displaystyle|bigl|bigr|Bigl|Bigr|big|Big)\b"
# Thousands separators between digit groups: 1,000 / 1{,}000 / 1\,000 -> 1000.
_THOUSANDS = r"(\d)(?:,|\{,\}|\\,)(\d{3})\b"


def _unified_math(texts: pl.Series) -> pl.Series:
    """NFKC text with every math delimiter written ``$`` (an escaped dollar is currency: a space),
    ``\\dfrac``/``\\tfrac`` as ``\\frac``, style wrappers and sizing commands, thousands
    separators and LaTeX spacing commands gone: the first half of the comparison form, in which
    the segments between dollars alternate text / math."""
    return (
        texts.fill_null("").str.normalize("NFKC")
        .str.replace_all(r"\\\$", " ", literal=False)            # an escaped dollar is currency, not math
        .str.replace_all(r"\$\$|\\\(|\\\)|\\\[|\\\]", "$")
        .str.replace_all(r"\\[dt]frac", "\\frac", literal=False)
        .str.replace_all(_STYLE_WRAPPERS, "$1")
        .str.replace_all(_SIZING, "")
        .str.replace_all(_THOUSANDS, "$1$2").str.replace_all(_THOUSANDS, "$1$2")
        .str.replace_all(r"\\[,;:!]", " ")                       # LaTeX spacing commands
    )


def comparison_texts(texts: pl.Series) -> pl.Series:
    """The canonical form every matcher compares; the stored text stays as given.

    Math delimiters are unified (``\\(..\\)``, ``\\[..\\]``, ``$$..$$`` -> ``$..$``) and then
    dropped, whitespace inside math is removed, ``\\text{}``/``\\mathrm{}``/``\\left``/``\\right``
    are dropped, ``\\dfrac``/``\\tfrac`` become ``\\frac``, thousands separators go, and the
    result is NFKC, lower-cased and whitespace-collapsed. So ``$\\sqrt{120 - \\sqrt{x}}$`` and
    ``$\\sqrt{120-\\sqrt{x}}$`` compare equal, and so do ``\\(0\\)`` and ``0``.
    """
    # Segments between dollars alternate text / math: math loses its whitespace.
    parts = _unified_math(texts).str.split("$").list.eval(
        pl.when(pl.int_range(pl.len()) % 2 == 1)
        .then(pl.element().str.replace_all(r"\s+", ""))
        .otherwise(pl.element())
    )
    return parts.list.join(" ").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


# A math segment with nothing but numbers, units and punctuation states no structure ("$12$",
# "$\\$500$", "$60^\\circ$", "$6\\%$").
_TRIVIAL_MATH = r"^(?:[#.,;:()\[\]{}+\-]|\\%|%|\^?\\circ|\^)*$"


def math_skeletons(texts: pl.Series) -> pl.Series:
    """The math of each text with its numbers masked: the math segments of the comparison form
    (whitespace removed, lower case), every number written ``#``, segments that hold only numbers
    and units left out, joined by spaces; "" for a text with no such math.

    Two exercises of one template differ here ("$x^{12}-1$" / "$x^8+3x^4-4$"); a number-changed
    copy ("$|x-7|-3=-2$" / "$|x-4|-10=2$") and a paraphrase, which keeps the math, barely do.
    """
    segments = _unified_math(texts).str.split("$").list.gather_every(2, offset=1)
    return segments.list.eval(
        pl.element().str.replace_all(r"\s+", "").str.to_lowercase().str.replace_all(r"\d+(?:\.\d+)?", "#")
    ).list.eval(pl.element().filter(~pl.element().str.contains(_TRIVIAL_MATH))).list.join(" ")


def setup_keys(texts: pl.Series) -> pl.Series:
    """The worded setup of each text: its words outside the math (comparison form: lower case,
    punctuation gone), every number written ``#``, joined by spaces; the complement of
    ``math_skeletons``. A number-changed copy keeps it ("In the equation $|x-7|-3=-2$, what is
    the product ..." / "... $|x-4|-10=2$ ..."), and so does every exercise of a template."""
    words = _unified_math(texts).str.split("$").list.gather_every(2, offset=0).list.join(" ")
    return (words.str.to_lowercase().str.replace_all(r"\d+(?:\.\d+)?", "#")
            .str.replace_all(r"[^\w#]+", " ").str.strip_chars())


def comparison_text(text: str) -> str:
    """``comparison_texts`` of one text."""
    return comparison_texts(pl.Series([text], dtype=pl.Utf8)).item()
