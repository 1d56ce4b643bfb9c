"""Server-side template injection: expressions a template engine would evaluate.

A value rendered *as* a template (rather than into one) lets its author run code in the
engine: Jinja2/Twig ``{{ }}`` and ``{% %}``, Spring/JSP EL and FreeMarker ``${ }``, Ruby and
Thymeleaf ``#{ }``/``*{ }``, ERB/ASP ``<%= %>``, Razor ``@( )``, Smarty ``{php}``. Probes
evaluate arithmetic (``{{7*7}}``), exploits climb the object graph (``__class__.__mro__``,
``getClass().forName``, ``T(java.lang.Runtime)``) or call filters that run commands. Plain
placeholders (``Hello {{name}}``, ``${HOME}``) are what template text looks like and stay clear.
Log4j-style lookups (``${jndi:ldap://...}``, CVE-2021-44228), the same class of expression
injection, are scored here too.

References: OWASP WSTG-INPV-18 *Testing for Server-side Template Injection*, CWE-1336,
CWE-917 *Expression Language Injection*, PortSwigger Research, *Server-Side Template
Injection* (Kettle, 2015).

Trust assumption: the value is attacker-controlled. Patterns are linear; the expression body is
read through bounded character classes only.
"""

from __future__ import annotations

import re

__all__ = ["score_ssti"]

_OPENER_CHARS = re.compile(r"[{\[<@*$#]")
_OPENER = re.compile(r"\{\{|\{%|\$\{|#\{|\*\{|@\{|<%|\[\[|@\(|\{\$|\{php\}|<#|\[#", re.I)
# An arithmetic probe right inside a delimiter: {{7*7}}, ${3*3}, <%= 7 * 7 %>, {{7*'7'}}.
_ARITH = re.compile(
    r"(?:\{\{|\$\{\{?|#\{|\*\{|<%=?|\[\[|@\(|\{%)\s*[\"']?\d+[\"']?\s*[*+/-]\s*[\"']?\d+", re.I
)
_EXPLOIT = re.compile(
    r"__(?:class|mro|subclasses|globals|builtins|import|init|base|bases|dict|getitem)__"
    r"|\.getclass\s*\(|forname\s*\(|\bruntime\b|processbuilder|\bt\s*\(\s*java\."
    r"|freemarker\.template|\?new\s*\(|\bos\.(?:popen|system)|\bsubprocess\b|\bpopen\s*\("
    r"|\|\s*attr\s*\(|\|\s*filter\s*\(|\bconfig\.(?:items|iteritems|values|keys|from_\w+)\b|\brequest\.application\b"
    r"|\b(?:lipsum|cycler|joiner|namespace)\.__|\bself\._|\bsystem\s*\(|file\.open|\bio\.popen"
    r"|\.exec\s*\(|getruntime|scriptenginemanager|\bmodule\.cache\b|\bdump\s*\(\s*app\b"
    r"|\bapp\.request\b|\bsmarty\.|\{php\}|\$\{?jndi:|\$\{(?:lower|upper|env|sys|java|::-)",
    re.I,
)
_PROBE_OBJECT = re.compile(
    r"(?:\{\{|\$\{|#\{)\s*(?:self|config|request|settings|_self|app|env|session|g)\s*(?:\}|\.|\[|\|)",
    re.I,
)
_LITERAL_METHOD = re.compile(r"(?:\{\{|\$\{|#\{)\s*(?:['\"][^'\"]{0,40}['\"]|\[\])\s*\.", re.I)
_DIRECTIVE = re.compile(
    r"<#(?:assign|include|import)|\[#(?:assign|include)|\{%\s*(?:for|if|set)\b", re.I
)


def score_ssti(value: str) -> int:
    """How sure we are (0-100) that ``value`` injects a template expression."""
    if not _OPENER_CHARS.search(value):
        return 0
    opener = _OPENER.search(value)
    if opener is None:
        return 0
    rest = value[opener.start() :]
    if _ARITH.search(rest):
        return 90
    if _EXPLOIT.search(rest):
        return 90
    best = 0
    if _PROBE_OBJECT.search(rest):
        best = 75
    if _LITERAL_METHOD.search(rest):
        best = max(best, 80)
    m = _DIRECTIVE.search(rest)
    if m:
        best = max(best, 80 if m.group().startswith(("<#", "[#")) else 40)
    return best
