"""Screens: which detectors can possibly score a value, decided from its characters and words.

Most values of a request (User-Agent, Accept, Referer, names, notes, SKUs) hold nothing any
detector could score, yet running six detectors over each was most of what inspection cost
(measured with ``bench/inspection_cost.py``). So each value is first reduced to a few cheap
facts, each computed by C-level string operations:

- its *special characters*: the bytes outside ``[A-Za-z0-9_.,:@/+ -]``;
- its *words*: the lower-cased runs of ``[a-z0-9_]``, every other byte a separator;
- a few substrings (``..``, ``://``, ``db.``), and for quotes, what follows each one.

Each condition in :func:`_fired` is a necessary one that mirrors, branch by branch, what its
detector needs before it can return a score above zero: a separator *and* a command name for
command injection; for SQL, a quote followed by something other than a plain word, a number or
a string, or one of :data:`~apishield.inspect.sqli.BARE_WORDS`; and so on. Splitting at every
non-word byte only ever yields more (and shorter) words than a detector's own word boundaries
do, so a word a detector needs is always among them. The tests check the claim on every value
of the corpus and on generated adversarial strings: when a screen says no, its detector
scores 0.

:func:`request_screen` applies the same conditions to all the values of a request at once,
joined by NUL (which canonical values never hold, and which no condition reads): one pass over
the request instead of one per value. A condition that holds for a value holds for the joined
text, and names *features*, substrings that every value meeting it contains; only the values
holding a feature are screened on their own. A typical request has none.

Values that are not ASCII after canonical decoding are screened by :func:`ascii_form` when their
only non-ASCII characters are plain letters (``ü``, ``é``, ``ł``, Greek, Cyrillic): each becomes
``\\x01``, a separator the screens give no meaning to, so a word is only ever split, never
formed, and a quote followed by one counts as followed by anything. Letters whose case mappings
reach ASCII (``İ``, ``ı``, ``ß``, ``ſ``) are not plain: a case-blind pattern or a lowering could
read them as ``i`` or ``ss``. Any other value skips the screens and every detector runs.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

from apishield.inspect.cmdi import COMMAND_WORDS, INTERPRETERS, PHP_FUNCTIONS
from apishield.inspect.nosqli import JS_HINTS
from apishield.inspect.settings import DETECTORS, DetectorName
from apishield.inspect.sqli import BARE_WORDS, SYNTAX_WORDS, WORD_SPLIT
from apishield.inspect.traversal import WRAPPERS
from apishield.inspect.xss import SINK_WORDS

__all__ = ["SEPARATOR", "ascii_form", "candidates", "request_screen", "value_starts"]

#: What joins the values of a request for :func:`request_screen`, and what stands for a plain
#: non-ASCII letter in :func:`ascii_form`'s result: both mean nothing to any condition.
SEPARATOR = "\x00"
_LETTER = "\x01"

_PLAIN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,:@/+ -\x00\x01"
_ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789 "
_SPLIT = WORD_SPLIT  # lower-cased bytes: every byte that cannot be part of a word is a space


def _plain_letter(code: int) -> bool:
    char = chr(code)
    mapped = char.lower() + char.upper() + char.casefold()
    return char.isalpha() and all(not c.isascii() for c in mapped)


# Latin-1 letters, Latin Extended-A and -B, Greek and Cyrillic.
_LETTERS_TO_MARK = {
    code: _LETTER for code in (*range(0xC0, 0x250), *range(0x370, 0x530)) if _plain_letter(code)
}


def ascii_form(value: str) -> str | None:
    """``value`` with each plain non-ASCII letter as ``\\x01``, or ``None`` if anything else is
    not ASCII. The screens' answer for the result holds for ``value`` (test_screen.py)."""
    form = value.translate(_LETTERS_TO_MARK)
    return form if form.isascii() else None


def _chars(text: str) -> frozenset[int]:
    return frozenset(text.encode("ascii"))


def _words(names: frozenset[str] | tuple[str, ...]) -> frozenset[bytes]:
    # "cmd.exe" and "powershell.exe" are one command word to the detector and two words here.
    return frozenset(
        piece for name in names for piece in name.lower().encode("ascii").translate(_SPLIT).split()
    )


# -- SQL ------------------------------------------------------------------------------------
_SQLI_WORDS = _words(BARE_WORDS)
_SQLI_TEXT = ("xp_", "||", "&&", "/*!")
# What may follow a quote without the SQL detector scoring that quote (sqli._breakout_score):
# at most two ")" (a third fills its three-token look-ahead), then a token it reads as prose --
# a number, a string, "," or "(", an @variable, a character it cannot place, or a plain word
# that is neither SQL syntax nor called like a function. Only spaces count as spacing here
# (other whitespace, a NUL separator, a plain non-ASCII letter or the end make the quote
# risky), and a word followed by \x01 may go on in the value, so it is risky too. Possessive
# quantifiers: the look-ahead is linear in what it reads.
_SYNTAX = "|".join(sorted(SYNTAX_WORDS, key=lambda w: (-len(w), w)))
_PROSE_AFTER_QUOTE = re.compile(
    r"(?: *+\)){0,2} *+"
    r"(?:[0-9,(.?\[\]{}\\@\"'`]|:(?![:=])"
    rf"|(?!(?:{_SYNTAX})(?![a-z0-9_$@.]))[a-z_$][a-z0-9_$@.]*+(?!\x01|\s*\())"
)

# -- NoSQL ----------------------------------------------------------------------------------
_NOSQLI_TEXT = ("db.", "this.")
_NOSQLI_OBJECTS = frozenset({b"db", b"this"})
# What score_nosqli's breakout pattern needs unless the value holds "==": a separator, spacing,
# then one of its JavaScript words (the hints it checks first may sit anywhere: "submit="
# holds "it=", so they decide nothing here). Same "\\s" as the detector's.
_JS_NAMES = {hint.strip(" .{=") for hint in JS_HINTS}
_JS_WORD = re.compile(r"\s*(?:" + "|".join(sorted(_JS_NAMES, key=lambda w: (-len(w), w))) + ")")
# Each is followed, in that pattern, by "\b", ".", "(", "{", "=" or spacing: a value it matches
# holds the word whole.
_JS_WORDS = _words(tuple(_JS_NAMES))


def _js_after_break(low: str, chars: frozenset[int]) -> bool:
    # ";", "|" or "&" (which "||" and "&&" end with), then _JS_WORD: each occurrence is found
    # at C speed and the pattern only tried there (a search tried it at every position).
    for sep in _JS_SEPARATORS:
        if ord(sep) in chars:
            pos = low.find(sep)
            while pos >= 0:
                if _JS_WORD.match(low, pos + 1):
                    return True
                pos = low.find(sep, pos + 1)
    return False


_JS_SEPARATORS = ";|&"
_NOSQLI_BREAKS = ((b";", ";"), (b"||", "||"), (b"&&", "&&"))

# -- commands -------------------------------------------------------------------------------
_CMDI_ALWAYS = _chars("{<$`")  # Shellshock, <?php and SSI, ${IFS} $( $_GET, backticks
_CMDI_SEPARATORS = _chars(";&|\n\r")
_CMDI_COMMANDS = _words(COMMAND_WORDS)
_CMDI_ANYWHERE = _words(INTERPRETERS) | {b"bin", b"sbin", b"cmd"}  # nc -e, /bin/sh, cmd /c
_CMDI_PHP = _words(PHP_FUNCTIONS)

# -- XSS ------------------------------------------------------------------------------------
_XSS_QUOTES = _chars("'\"`}")
_XSS_SINKS = _words(SINK_WORDS)
# Dropped by browsers inside a URL scheme, and by score_xss before it reads one.
_CONTROL = b"\t\n\r\x0b\x0c"

# -- traversal ------------------------------------------------------------------------------
_TRAVERSAL_WORDS = frozenset(
    {b"etc", b"proc", b"winnt", b"ssh", b"aws", b"var", b"inetpub", b"conf", b"usr", b"bin"}
)
# The names _SENSITIVE matches with a separator that the split drops, by the word they start
# with (the texts are searched for only when their word is there).
_TRAVERSAL_TEXT: dict[bytes, tuple[str, ...]] = {
    b"windows": ("windows/", "windows\\"),
    b"win": ("win.ini",),
    b"boot": ("boot.ini",),
    b"web": ("web.config", "web-inf"),
    b"meta": ("meta-inf",),
    b"git": (".git",),
    b"env": (".env",),
    b"global": ("global.asa",),
    b"localstart": ("localstart",),
}
_TRAVERSAL_LEADS = frozenset(_TRAVERSAL_TEXT)
_WRAPPER_WORDS = _words(WRAPPERS)

# -- templates ------------------------------------------------------------------------------
_SSTI_CHARS = _chars("{[<")

# The words that let some detector score a value with no special character, no "." and no ":"
# (-moz-binding holds only "-", and "moz" as a word). Values without any, nor "_" (xp_...,
# id_rsa), skip the rest.
_PLAIN_WORDS = _SQLI_WORDS | _CMDI_ANYWHERE | _TRAVERSAL_WORDS | _TRAVERSAL_LEADS | {b"moz"}
# Every word a condition reads.
_TRIGGER_WORDS = (
    _PLAIN_WORDS
    | _CMDI_COMMANDS
    | _CMDI_PHP
    | _NOSQLI_OBJECTS
    | _XSS_SINKS
    | _WRAPPER_WORDS
    | _JS_WORDS
)

#: A condition met: its detector, and groups of features. A value that meets the condition
#: holds at least one feature of every group.
Fired = list[tuple[DetectorName, tuple[tuple[str, ...], ...]]]


def _texts(low: str, texts: Sequence[str]) -> tuple[str, ...]:
    return tuple(text for text in texts if text in low)


def _decoded(words: frozenset[bytes]) -> tuple[str, ...]:
    return tuple(word.decode("ascii") for word in words)


def _of(chars: frozenset[int]) -> tuple[str, ...]:
    return tuple(chr(c) for c in chars)


def _risky_quote(low: str, quote: str) -> bool:
    """Does some ``quote`` in ``low`` start SQL, or stand doubled?"""
    pos = low.find(quote)
    while pos >= 0:
        if low.startswith(quote, pos + 1) or _PROSE_AFTER_QUOTE.match(low, pos + 1) is None:
            return True
        pos = low.find(quote, pos + 1)
    return False


def _fired(low: str) -> Fired:
    """The conditions ``low`` (lower-cased, ASCII) meets, with the features of each.

    For the joined values of a request, the values holding a feature of every group of a
    condition are the ones worth screening one by one.

    A search for a substring of two or more characters costs about one nanosecond per
    character of a joined request, a set lookup or a one-character search next to nothing
    (measured): so each substring is only searched for once a word or a character it needs is
    known to be there.
    """
    data = low.encode("ascii")
    special = data.translate(None, _PLAIN)
    # Every byte but letters, digits and spaces, in order: a pattern made of them only occurs
    # in ``low`` if it occurs here, a fraction of the length, so it is searched first.
    punct = data.translate(None, _ALNUM)
    # Only the words some condition reads: an intersection looks each word up once, where a
    # set of all of them would also store each (callgrind: the split is most of the cost).
    words = _TRIGGER_WORDS.intersection(data.translate(_SPLIT).split())
    fired: Fired = []
    dot = "." in low
    if (
        not special
        and words.isdisjoint(_PLAIN_WORDS)
        and not dot
        and ":" not in low
        and "_" not in low  # xp_..., id_rsa
    ):
        return fired  # letters, digits, spaces, ",@/+-" and no word any detector needs
    chars = frozenset(special)
    # score_sqli: a quote that may start SQL; for a bare value, what _bare_anchor finds:
    # one of BARE_WORDS, "||", "&&", "/*!" or "xp_" starting a word.
    quotes = tuple(q for q in "'\"" if ord(q) in chars)
    if quotes and any(_risky_quote(low, quote) for quote in quotes):
        fired.append(("sqli", (quotes,)))
    if hits := words & _SQLI_WORDS:
        fired.append(("sqli", (_decoded(hits),)))
    if punct.find(b"||") >= 0 and "||" in low:
        fired.append(("sqli", (("||",),)))
    if punct.find(b"&&") >= 0 and "&&" in low:
        fired.append(("sqli", (("&&",),)))
    if punct.find(b"/*!") >= 0 and "/*!" in low:
        fired.append(("sqli", (("/*!",),)))
    if "_" in low and "xp_" in low:
        fired.append(("sqli", (("xp_",),)))
    # score_nosqli: "$" for operators; db.x.find( and this.x.match; ";", "||" or "&&"
    # followed by JavaScript ("==" or one of its words).
    if 36 in chars:  # "$"
        fired.append(("nosqli", (("$",),)))
    if dot and not words.isdisjoint(_NOSQLI_OBJECTS) and (found := _texts(low, _NOSQLI_TEXT)):
        fired.append(("nosqli", (found,)))
    if (59 in chars or 124 in chars or 38 in chars) and (
        (punct.find(b"==") >= 0 and "==" in low)
        or (not words.isdisjoint(_JS_WORDS) and _js_after_break(low, chars))
    ):
        breaks = tuple(t for b, t in _NOSQLI_BREAKS if punct.find(b) >= 0 and t in low)
        if breaks:
            fired.append(("nosqli", (breaks,)))
    # score_cmdi: the checks before its separator loop, then a separator followed by a
    # command name somewhere.
    if always := chars & _CMDI_ALWAYS:
        fired.append(("cmdi", (_of(always),)))
    if hits := words & _CMDI_ANYWHERE:
        fired.append(("cmdi", (_decoded(hits),)))
    if 40 in chars and (hits := words & _CMDI_PHP):  # system('id')
        fired.append(("cmdi", (_decoded(hits), ("(",))))
    if (separators := chars & _CMDI_SEPARATORS) and (hits := words & _CMDI_COMMANDS):
        fired.append(("cmdi", (_decoded(hits), _of(separators))))
    # score_xss: a tag; a handler's "="; a quote or "}" before a sink; a scheme (read with the
    # tabs and newlines a browser drops); CSS.
    if 60 in chars:  # "<"
        fired.append(("xss", (("<",),)))
    if 61 in chars and "on" in low:  # "=" of on...=
        fired.append(("xss", (("=",), ("on",))))
    if (quoted := chars & _XSS_QUOTES) and (hits := words & _XSS_SINKS):
        fired.append(("xss", (_of(quoted), _decoded(hits))))
    if ":" in low:
        if chars.isdisjoint(_CONTROL):
            if found := _texts(low, ("script", "data")):
                fired.append(("xss", (found, (":",))))
        elif b"script" in (compact := data.translate(None, _CONTROL)) or b"data" in compact:
            # "scr\tipt" holds no "script" until its tab is gone: only ":" is a feature.
            fired.append(("xss", ((":",),)))
    if 40 in chars and "expression" in low:
        fired.append(("xss", (("expression",),)))
    if b"moz" in words and "binding" in low:  # -moz-binding: "moz" stands alone
        fired.append(("xss", (("binding",),)))
    if ":" in low and "behavior" in low:
        fired.append(("xss", (("behavior",),)))
    # score_traversal: "..", a stream wrapper's "://", or a sensitive file name, which it only
    # looks for in values holding "/", "\\" or ".".
    if punct.find(b"..") >= 0 and ".." in low:
        fired.append(("traversal", (("..",),)))
    if (hits := words & _WRAPPER_WORDS) and "://" in low:
        fired.append(("traversal", (("://",), _decoded(hits))))
    if "/" in low or "\\" in low or dot:
        paths = tuple(c for c in "/\\." if c in low)
        if hits := words & _TRAVERSAL_WORDS:
            fired.append(("traversal", (_decoded(hits), paths)))
        for lead in words & _TRAVERSAL_LEADS:
            if found := _texts(low, _TRAVERSAL_TEXT[lead]):
                fired.append(("traversal", (found,)))
        # matched as prefixes: .htaccess~, id_rsa.pub
        if dot and ".ht" in low:
            fired.append(("traversal", ((".ht",),)))
        if "_" in low and "id_rsa" in low:
            fired.append(("traversal", (("id_rsa",), paths)))
    # score_ssti: every template opener holds "{", "[" or "<", except Razor's "@(".
    if openers := chars & _SSTI_CHARS:
        fired.append(("ssti", (_of(openers),)))
    if punct.find(b"@(") >= 0 and "@(" in low:
        fired.append(("ssti", (("@(",),)))
    return fired


def candidates(value: str) -> list[DetectorName]:
    """The detectors that can give ``value`` a score above zero; the others need not run.

    ``value`` is canonical and ASCII (:func:`ascii_form` makes it so).
    """
    fired = _fired(value.lower())
    if not fired:
        return []
    names = {name for name, _ in fired}
    return [name for name in DETECTORS if name in names]


def value_starts(values: Sequence[str]) -> list[int]:
    """Where each value starts once they are joined by one character."""
    starts: list[int] = []
    offset = 0
    for value in values:
        starts.append(offset)
        offset += len(value) + 1
    return starts


def request_screen(forms: Sequence[str]) -> list[int]:
    """The indices of ``forms`` worth screening one by one with :func:`candidates`.

    ``forms`` are canonical ASCII values (:func:`ascii_form`). Any value left out has no
    candidate detector: every condition it could meet is met by the joined values too, and
    the value would hold a feature of each of its groups.
    """
    low = SEPARATOR.join(forms).lower()
    fired = _fired(low)
    if not fired:
        return []
    starts = value_starts(forms)
    count = len(starts)
    picked: set[int] = set()
    for _, groups in fired:
        found: set[int] = set()
        for feature in groups[0]:
            pos = low.find(feature)
            while pos >= 0:
                index = bisect_right(starts, pos) - 1
                found.add(index)
                # The rest of this value need not be searched: it is found already.
                pos = low.find(feature, starts[index + 1]) if index + 1 < count else -1
        for group in groups[1:]:
            if not found:
                break
            found = {
                i
                for i in found
                if any(
                    feature in low[starts[i] : starts[i + 1] - 1 if i + 1 < count else None]
                    for feature in group
                )
            }
        picked |= found
    return sorted(picked)
