"""Path traversal and local file inclusion: a value that walks out of its directory.

After canonical decoding (``%2e%2e%2f``, ``%252e``, ``..%c0%af`` and ``\\`` are all ``../`` by
then), the detector counts ``..`` path segments, looks for the files attackers read first
(``/etc/passwd``, ``win.ini``, ``WEB-INF/web.xml``, ``.htaccess``...) at the start of an
absolute path or after a traversal, and for stream wrappers that turn a file parameter into
code or remote access (``php://filter``, ``phar://``, ``expect://``). A NUL byte removed during
decoding (``passwd%00.png``) adds to the score: its only use is to cut off a suffix the
application appends.

References: OWASP WSTG-ATHZ-01 *Testing Directory Traversal File Include*, CWE-22, CWE-98,
CWE-158.

Trust assumption: the value is attacker-controlled and already canonical. All patterns are
linear (fixed alternations, single character classes).
"""

from __future__ import annotations

import re

__all__ = ["WRAPPERS", "score_traversal"]

_DOTDOT = re.compile(r"(?:^|(?<=[/\\]))\.{2,}(?=[/\\]|$)")
_SENSITIVE = re.compile(
    r"(?:^|[/\\])(?:etc[/\\](?:passwd|shadow|group|hosts|issue|crontab|sudoers|hostname"
    r"|motd|fstab|ssh[/\\]|mysql[/\\]|apache2?[/\\]|nginx[/\\]|httpd[/\\]|php)"
    r"|proc[/\\](?:self|\d+|version|cmdline|environ)|windows[/\\](?:win\.ini|system\.ini|system32)"
    r"|winnt[/\\]|boot\.ini|win\.ini|\.htaccess|\.htpasswd|web\.config|web-inf[/\\]|meta-inf[/\\]"
    r"|\.ssh[/\\]|\.aws[/\\]|\.git[/\\]|\.env(?:$|[/\\])|id_rsa|var[/\\](?:log|www|lib|mail)[/\\]"
    r"|inetpub[/\\]|global\.asa|localstart\.asp|conf[/\\]server\.xml|usr[/\\]local[/\\]"
    r"|bin[/\\](?:sh|bash|id)\b)",
)
_ABSOLUTE = re.compile(r"^\s*(?:[/\\~]|[a-z]:[/\\]|file:)", re.I)
#: Stream wrappers that turn a file parameter into code or remote access (the screens read them).
WRAPPERS = (
    *("php", "phar", "zip", "expect", "jar", "netdoc", "gopher", "dict", "glob", "file", "data"),
)
_WRAPPER = re.compile(r"\b(" + "|".join(WRAPPERS) + ")://", re.I)
_WRAPPER_SCORE = {"file": 80, "data": 60, "glob": 70}


def score_traversal(value: str, had_nul: bool = False) -> int:
    """How sure we are (0-100) that ``value`` reaches a file outside the intended directory."""
    best = 0
    if ".." in value:
        segments = len(_DOTDOT.findall(value))
        if segments >= 2:
            best = 85
        elif segments == 1:
            best = 60 if value.lstrip().startswith(("..", "/..", "\\..")) else 50
        if segments and _SENSITIVE.search(value.lower()):
            return 95
    low = value.lower()  # the patterns are lower-case: a case-blind search costs 10x more
    sensitive = _SENSITIVE.search(low) if ("/" in value or "\\" in value or "." in value) else None
    if sensitive:
        lead = value[: sensitive.start() + 1]
        if _ABSOLUTE.match(value) or (lead and not lead.strip("./\\ ")):
            best = max(best, 85)  # /etc/passwd, C:\boot.ini, /./././etc/passwd, .\\./etc/...
        elif sensitive.start() == 0:
            best = max(best, 60)  # a bare name: "web.config.sample" is also a file name
        else:
            best = max(best, 40)  # mentioned in text
    if "://" in value:
        m = _WRAPPER.search(low)
        if m:
            best = max(best, _WRAPPER_SCORE.get(m.group(1).lower(), 85))
    if had_nul:
        best = min(100, best + 30) if best else 60
    return best
