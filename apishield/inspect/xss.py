"""Cross-site scripting: markup or script that a browser would run if the value were echoed.

Three contexts are covered. HTML: a tag that runs script (``<script>``, ``<iframe>``,
``<object>``…) or any tag carrying an event-handler attribute (``<img src=x onerror=...>``).
Attributes: a quote that closes the attribute the value sits in and opens a handler
(``" autofocus onfocus=alert(1)``), and URLs in the ``javascript:``/``vbscript:`` schemes
(browsers drop tabs and newlines inside a scheme, so those are removed first). JavaScript
strings: a quote followed by an operator and a call of a sink (``'-alert(1)-'``,
``";alert(document.domain)//``). Formatting markup (``<b>``, ``<a href="https://...">``,
``<img src="cat.png">``), comparisons (``a < b``) and prose about JavaScript stay clear.

References: OWASP XSS Prevention Cheat Sheet, OWASP WSTG-INPV-01/02, CWE-79, the WHATWG HTML
standard's tokenizer (attribute names may follow ``/`` or a quote with no space).

Trust assumption: the value is attacker-controlled. Every pattern is linear: alternations of
literals and single character classes, no nested quantifiers.
"""

from __future__ import annotations

import re

__all__ = ["SINK_WORDS", "score_xss"]

_TAG = re.compile(r"<\s*(?:/\s*)?([a-z][a-z0-9:_-]*)", re.I)
_ACTIVE_TAGS = frozenset(
    {"iframe", "frame", "frameset", "object", "embed", "applet", "base", "meta", "link"}
    | {"isindex", "xml", "import", "portal", "xss", "layer", "ilayer", "bgsound", "style"}
)
_HANDLER = re.compile(r"(?:^|[\s\"'/`;+,])on[a-z]{3,30}\s*=")  # on the lowered value
_SCHEME = re.compile(r"(?:java|vb|live|ecma)script:(?=\S)|data:\s*(?:text/html|image/svg)", re.I)
_CONTROL = str.maketrans("", "", "\t\n\r\x0b\x0c")
_SINK_CALL = re.compile(
    r"(?:alert|prompt|confirm|eval|settimeout|setinterval|function|fetch|import|atob"
    r"|string\.fromcharcode)\s*[(`]|\b(?:document|window|top|self|parent)\s*[.\[]"
    r"|\blocation\s*[.=]",
    re.I,
)
#: The sinks a JavaScript-string breakout calls, each with what must follow its name (the
#: screens read the names: a quote without one of them cannot score here).
_SINKS = {
    "alert": "",
    "prompt": "",
    "confirm": "",
    "eval": "",
    "settimeout": "",
    "setinterval": "",
    "fetch": "",
    "import": "",
    "document": r"\.",
    "window": r"\.",
    "top": r"\[",
    "self": r"\[",
    "location": "",
}
SINK_WORDS = frozenset(_SINKS)
# A quote (or "}") that ends a JavaScript string or block, an operator, then a sink.
_JS_BREAKOUT = re.compile(
    r"[\"'`}]\s*(?:[-+*/%;,)|&^]+\s*)?(?:"
    + "|".join(name + after for name, after in _SINKS.items())
    + r")\b",
    re.I,
)
_CSS = re.compile(r"expression\s*\(|-moz-binding|behavior\s*:\s*url", re.I)


def score_xss(value: str) -> int:
    """How sure we are (0-100) that ``value`` runs script where it is reflected."""
    best = 0
    first_tag = -1
    if "<" in value:
        for m in _TAG.finditer(value):
            name = m.group(1).lower()
            if first_tag < 0:
                first_tag = m.start()
            if name == "script":
                return 95
            if name in _ACTIVE_TAGS:
                best = max(best, 75)
            elif name in ("svg", "math"):
                best = max(best, 40)
    low = value.lower()
    if "=" in value and "on" in low:
        for m in _HANDLER.finditer(low):
            if 0 <= first_tag < m.start():
                return 90  # a tag with an event handler
            lead = value[m.start()] if m.start() < len(value) else ""
            body = value[m.end() : m.end() + 200]
            if lead in "\"'`":
                best = max(best, 85)  # a quote closed the attribute: a handler breaks out
            elif _SINK_CALL.search(body):
                best = max(best, 80)
            else:
                best = max(best, 50)
    if ":" in value:
        # Browsers drop tabs and newlines anywhere in a scheme, "javascr\tipt:" included, so
        # the words are looked for once they are gone.
        compact = value.translate(_CONTROL)
        folded = compact.lower()
        if ("script" in folded or "data" in folded) and _SCHEME.search(compact):
            best = max(best, 85 if "script:" in compact.lower() else 75)
    if best < 85 and ("'" in value or '"' in value or "`" in value or "}" in value):
        if _JS_BREAKOUT.search(value) and _SINK_CALL.search(value):
            best = max(best, 85)
    if best < 50 and ("expression" in low or "binding" in low or "behavior" in low):
        if _CSS.search(value):
            best = max(best, 60)
    return best
