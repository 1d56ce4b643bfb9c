"""Canonical decoding: the form of a value that the upstream may end up acting on.

Attackers hide payloads behind encodings that a WAF does not undo but an application does:
double percent-encoding (``%252e``), IIS ``%uXXXX`` escapes, overlong UTF-8 (``%c0%ae`` for
``.``), HTML character references, fullwidth or look-alike characters that a later charset
conversion folds to ASCII, and NUL bytes that truncate strings in C code (OWASP *Testing for
Path Traversal*, WSTG-ATHZ-01; CWE-174 *Double Decoding*, CWE-176 *Improper Handling of
Unicode Encoding*, CWE-158 *Improper Neutralization of Null Byte*). Every detector looks at the
value after :func:`canonical`, so one decoding serves all of them.

Trust assumption: none; the input is attacker-controlled. Every step is linear in the length of
the value and the number of rounds is bounded (``MAX_ROUNDS``), so no input can make decoding
expensive. Decoding is only ever used to *look* at a value: the request is forwarded unchanged.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = [
    "ENCODING_CHARS",
    "MAX_ROUNDS",
    "NOT_A_REFERENCE",
    "canonical",
    "decode_utf8",
    "percent_decode",
]

#: Rounds of percent/entity decoding. Three covers double and triple encoding, which is as deep
#: as real stacks of decoders go (proxy, framework, application); more would only cost time.
MAX_ROUNDS = 3

#: The ASCII characters :func:`canonical` acts on: an ASCII value holding none of them is its
#: own canonical form.
ENCODING_CHARS = "%&\\\x00"
#: What may follow a "&" that :func:`html.unescape` leaves alone: nothing, a space, a tab, a
#: newline or form feed, "&", "<" or ";" (the first character of its pattern excludes them).
NOT_A_REFERENCE = frozenset({"", " ", "\t", "\n", "\x0c", "&", "<", ";"})

_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNICODE_ESCAPE = re.compile(r"%u([0-9a-fA-F]{4})")
# A numeric character reference longer than any code point; html.unescape would hand it to int(),
# which refuses more than 4300 digits (CVE-2020-10735) and is slow below that.
_LONG_CHARREF = re.compile(r"&#[xX]?0*[0-9a-fA-F]{8,};?")
_BACKSLASH_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})")
# Characters that best-fit charset conversions (Windows code pages, MySQL's latin1 from utf8)
# fold to ASCII metacharacters; NFKC does not cover them because they are not compatibility
# forms. ("Best Fit" mapping attacks, CWE-176.)
_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u02bc": "'",
        "\u02b9": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u02ba": '"',
        "\u2039": "<",
        "\u203a": ">",
        "\u00ab": "<",
        "\u00bb": ">",
        "\u2215": "/",
        "\u2044": "/",
        "\u29f8": "/",
        "\u29f9": "\\",
        "\u2216": "\\",
        "\u00a0": " ",
    }
)


def decode_utf8(data: bytes) -> str:
    """UTF-8 that also folds *overlong* forms to the character they spell.

    ``c0 ae`` is an invalid two-byte spelling of ``.``; decoders that accepted such forms
    (old IIS, Tomcat, some Java stacks) let ``..%c0%af`` walk out of a directory (CVE-2000-0884,
    CWE-176). Bytes that are not UTF-8 at all are read as Latin-1, which never fails.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            out.append(chr(b))
            i += 1
            continue
        if 0xC0 <= b <= 0xDF:
            need, code = 1, b & 0x1F
        elif 0xE0 <= b <= 0xEF:
            need, code = 2, b & 0x0F
        elif 0xF0 <= b <= 0xF7:
            need, code = 3, b & 0x07
        else:
            out.append(chr(b))  # a stray continuation or invalid lead byte: Latin-1
            i += 1
            continue
        tail = data[i + 1 : i + 1 + need]
        if len(tail) < need or any(c & 0xC0 != 0x80 for c in tail):
            out.append(chr(b))
            i += 1
            continue
        for c in tail:
            code = (code << 6) | (c & 0x3F)
        # Overlong and surrogate forms are folded too: that is the point of this decoder.
        out.append(chr(code) if code < 0x110000 and not 0xD800 <= code <= 0xDFFF else "\ufffd")
        i += 1 + need
    return "".join(out)


def percent_decode(data: bytes) -> bytes:
    """``%XX`` → byte; a ``%`` not followed by two hex digits stays as it is (RFC 3986 §2.1)."""
    if data.find(b"%") < 0:  # "in" would first try b"%" as an integer and raise inside
        return data
    parts = data.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if len(part) >= 2 and part[0] in _HEX and part[1] in _HEX:
            out.append(int(part[:2], 16))
            out += part[2:]
        else:
            out.append(0x25)
            out += part
    return bytes(out)


def _backslash_escapes(value: str) -> str:
    # \x27 and \u0027: escapes that PHP's stripcslashes, JavaScript and many template engines
    # turn into the character; a filter that does not sees no quote at all.
    return _BACKSLASH_ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), value)


def _unicode_escapes(value: str) -> str:
    # %uXXXX: a non-standard escape that IIS and some ASP.NET stacks still decode.
    return _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def canonical(value: str, *, plus: bool = False) -> tuple[str, bool]:
    """The value after every decoding an application might apply, bounded and linear.

    Returns the canonical value and whether a NUL byte was removed from it (a truncation trick:
    ``passwd%00.png`` passes an extension check and opens ``passwd``). ``plus`` turns ``+``
    into a space first, as ``application/x-www-form-urlencoded`` does for query strings and form
    bodies (and only there: a ``+`` in a JSON string is a ``+``).
    """
    if plus and "+" in value:
        value = value.replace("+", " ")
    for _ in range(MAX_ROUNDS):
        before = value
        if "%" in value:
            if "%u" in value or "%U" in value:
                value = _unicode_escapes(value)
            value = decode_utf8(percent_decode(value.encode("utf-8", "surrogatepass")))
        if "&" in value:
            if "&#" in value:
                value = _LONG_CHARREF.sub("\ufffd", value)
            value = html.unescape(value)
        if "\\x" in value or "\\u" in value:
            value = _backslash_escapes(value)
        if value == before:
            break
    had_nul = "\x00" in value
    if had_nul:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = unicodedata.normalize("NFKC", value).translate(_LOOKALIKES)
    return value, had_nul
