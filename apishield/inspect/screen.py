"""Screens: which detectors can possibly score a value, decided from its characters and words.

Most values of a request (User-Agent, Accept, Referer, names, notes, SKUs) hold nothing any
detector could score, yet running six detectors over each was most of what inspection cost
(measured with ``bench/inspection_cost.py``). So each value is first reduced to two cheap
facts, each computed by C-level byte operations:

- its *special characters*: the bytes outside ``[A-Za-z0-9_.,:@/+ -]``;
- its *words*: the lower-cased runs of ``[a-z0-9_]``, every other byte a separator.

Each condition in :func:`candidates` is a necessary one that mirrors, branch by branch, what
its detector needs before it can return a score above zero: a separator *and* a command name
for command injection, a quote, ``||``/``&&``/``/*!`` or one of
:data:`~apishield.inspect.sqli.BARE_WORDS` for SQL, and so on. Splitting at every non-word byte
only ever yields more (and shorter) words than a detector's own word boundaries do, so a word a
detector needs is always among them. The tests check the claim on every value of the corpus and
on generated adversarial strings: when a screen says no, its detector scores 0.

Values that are not ASCII after canonical decoding are screened by :func:`ascii_form` when their
only non-ASCII characters are plain letters (``ü``, ``é``, ``ł``, Greek, Cyrillic): each becomes a
space, a separator the screens give no meaning to, so a word is only ever split, never formed.
Letters whose case mappings reach ASCII (``İ``, ``ı``, ``ß``, ``ſ``) are not plain: a case-blind
pattern or a lowering could read them as ``i`` or ``ss``. Any other value skips the screens and
every detector runs.
"""

from __future__ import annotations

from apishield.inspect.cmdi import COMMAND_WORDS, INTERPRETERS, PHP_FUNCTIONS
from apishield.inspect.settings import DetectorName
from apishield.inspect.sqli import BARE_WORDS

__all__ = ["ascii_form", "candidates"]

_PLAIN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,:@/+ -"
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
# Lower-cased bytes: every byte that cannot be part of a word becomes a space.
_SPLIT = bytes(b if b in _WORD_BYTES else 0x20 for b in range(256))


def _plain_letter(code: int) -> bool:
    char = chr(code)
    mapped = char.lower() + char.upper() + char.casefold()
    return char.isalpha() and all(not c.isascii() for c in mapped)


# Latin-1 letters, Latin Extended-A and -B, Greek and Cyrillic.
_LETTERS_TO_SPACE = {
    code: " "
    for code in (*range(0xC0, 0x250), *range(0x370, 0x530))
    if _plain_letter(code)
}


def ascii_form(value: str) -> str | None:
    """``value`` with each plain non-ASCII letter as a space, or ``None`` if anything else is
    not ASCII. The screens' answer for the result holds for ``value`` (test_screen.py)."""
    form = value.translate(_LETTERS_TO_SPACE)
    return form if form.isascii() else None


def _chars(text: str) -> frozenset[int]:
    return frozenset(text.encode("ascii"))


def _pieces(names: frozenset[str]) -> frozenset[bytes]:
    # "cmd.exe" and "powershell.exe" are one command word to the detector and two words here.
    return frozenset(
        piece for name in names for piece in name.lower().encode("ascii").translate(_SPLIT).split()
    )


_SQLI_CHARS = _chars("'\"")
_SQLI_WORDS = frozenset(w.encode("ascii") for w in BARE_WORDS)

_CMDI_ALWAYS = _chars("{<$`")  # Shellshock, <?php and SSI, ${IFS} $( $_GET, backticks
_CMDI_SEPARATORS = _chars(";&|\n\r")
_CMDI_COMMANDS = _pieces(COMMAND_WORDS)
_CMDI_ANYWHERE = _pieces(INTERPRETERS) | {b"bin", b"sbin", b"cmd"}  # nc -e, /bin/sh, cmd /c
_CMDI_PHP = _pieces(PHP_FUNCTIONS)

_NOSQLI_MONGO = frozenset({b"db", b"this"})
_NOSQLI_BREAK = _chars(";|&")
_NOSQLI_JS = frozenset(
    {b"return", b"this", b"sleep", b"while", b"function", b"db", b"var", b"let", b"const"}
    | {b"do", b"it"}
)

_XSS_CHARS = _chars("<='\"`}")

_TRAVERSAL_WORDS = frozenset(
    {b"etc", b"proc", b"winnt", b"ssh", b"aws", b"var", b"inetpub", b"conf", b"usr", b"bin"}
)
# Names _SENSITIVE matches with a separator that the split drops, by the word they start with.
_TRAVERSAL_LEADS = frozenset(
    {b"windows", b"win", b"boot", b"web", b"meta", b"git", b"env", b"global", b"localstart"}
)
_TRAVERSAL_TEXT = (
    "windows/",
    "windows\\",
    "win.ini",
    "boot.ini",
    "web.config",
    "web-inf",
    "meta-inf",
    ".git",
    ".env",
    "global.asa",
    "localstart",
)

_SSTI_CHARS = _chars("{[<")

# The words that let some detector score a value with no special character at all (traversal's
# are looked at by _traversal, which also needs "/", "." or "\\").
_PLAIN_WORDS = _SQLI_WORDS | _CMDI_ANYWHERE | _NOSQLI_MONGO


def _traversal(low: str, words: frozenset[bytes]) -> bool:
    # score_traversal: "..", a stream wrapper's "://", or a sensitive file name, which it only
    # looks for in values holding "/", "\\" or ".".
    if ".." in low or "://" in low:
        return True
    if "/" not in low and "\\" not in low and "." not in low:
        return False
    if not words.isdisjoint(_TRAVERSAL_WORDS):
        return True
    if not words.isdisjoint(_TRAVERSAL_LEADS) and any(text in low for text in _TRAVERSAL_TEXT):
        return True
    return ".ht" in low or "id_rsa" in low  # matched as prefixes: .htaccess~, id_rsa.pub


def _xss_text(low: str) -> bool:
    # score_xss without special characters: a script or data scheme, a CSS expression.
    return (":" in low and ("script" in low or "data" in low)) or (
        "expression" in low or "binding" in low or "behavior" in low
    )


def candidates(value: str) -> list[DetectorName]:
    """The detectors that can give ``value`` a score above zero; the others need not run.

    ``value`` is canonical and ASCII. Each condition mirrors what its detector needs before it
    returns a score (the comments name the detector's branches).
    """
    low = value.lower()
    # Substrings are looked for in the str: "x in bytes" first tries x as an integer and pays
    # for a TypeError every time (about 2,000 instructions, measured with callgrind).
    data = low.encode("ascii")
    special = data.translate(None, _PLAIN)
    words = frozenset(data.translate(_SPLIT).split())
    found: list[DetectorName] = []
    if not special:
        # Nothing but letters, digits and _.,:@/+- spaces: only the paths made of words remain.
        if (
            words.isdisjoint(_PLAIN_WORDS)
            and ".." not in low
            and "://" not in low
            and "xp_" not in low
            and not _xss_text(low)
            and not _traversal(low, words)
        ):
            return found
        chars: frozenset[int] = frozenset()
    else:
        chars = frozenset(special)
    # score_sqli: a quote for the quoted contexts; for a bare value, what _BARE_ANCHOR finds.
    if (
        not (chars.isdisjoint(_SQLI_CHARS) and words.isdisjoint(_SQLI_WORDS))
        or "xp_" in low
        or "||" in low
        or "&&" in low
        or "/*!" in low
    ):
        found.append("sqli")
    # score_nosqli: "$" for operators; db.x.find( and this.x.match; ";", "||" or "&&"
    # followed by JavaScript ("==" or one of its words).
    if (
        36 in chars  # "$"
        or not words.isdisjoint(_NOSQLI_MONGO)
        or (
            not chars.isdisjoint(_NOSQLI_BREAK)
            and ("==" in low or not words.isdisjoint(_NOSQLI_JS))
        )
    ):
        found.append("nosqli")
    # score_cmdi: the checks before its separator loop, then a separator followed by a
    # command name somewhere.
    if (
        not chars.isdisjoint(_CMDI_ALWAYS)
        or not words.isdisjoint(_CMDI_ANYWHERE)
        or (40 in chars and not words.isdisjoint(_CMDI_PHP))  # system('id')
        or (not chars.isdisjoint(_CMDI_SEPARATORS) and not words.isdisjoint(_CMDI_COMMANDS))
    ):
        found.append("cmdi")
    # score_xss: a tag, a handler's "=", a quote or "}" closing a string, a scheme, CSS.
    if not chars.isdisjoint(_XSS_CHARS) or _xss_text(low):
        found.append("xss")
    if _traversal(low, words):
        found.append("traversal")
    # score_ssti: every template opener holds "{", "[" or "<", except Razor's "@(".
    if not chars.isdisjoint(_SSTI_CHARS) or "@(" in low:
        found.append("ssti")
    return found
