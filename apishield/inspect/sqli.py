"""SQL injection: does the value break out of a string or number context into SQL syntax?

An application that builds SQL by concatenation puts a value into one of three places: inside
single quotes, inside double quotes, or bare (a number, an identifier). For each place this
module asks what a SQL lexer would see: inside quotes, where the first unescaped quote closes
the literal and what follows is code; bare, where the whole value is code. The tokens after the
break are then judged on their syntax: a tautology (``' or 'a'='a``), a ``UNION SELECT``, a
stacked statement (``; DROP TABLE``), a comment that cuts the rest of the query off
(``admin'--``), a call of a time-delay or file function, a clause (``ORDER BY 3``). Words alone
prove nothing: ``O'Brien``, "please select a size", "drop table reservations for Friday" all
tokenize to a string or bareword followed by more barewords, which no injection looks like.

References: OWASP Top 10 A03:2021 Injection, OWASP WSTG-INPV-05 *Testing for SQL Injection*,
CWE-89. The approach (tokenize, then judge the token shapes) is the one libinjection made known;
the tokenizer and the rules here are apishield's own.

Trust assumption: the value is attacker-controlled. Every step is linear: one regex per token,
each anchored and free of nested quantifiers, and each rule looks at a bounded window.
"""

from __future__ import annotations

import re

__all__ = ["BARE_WORDS", "SYNTAX_WORDS", "WORD_SPLIT", "score_sqli", "tokenize"]

Token = tuple[str, str]  # (type, lower-cased text)
_END: Token = ("_", "")  # past the last token; "_" is in no set of types below

# Token types, one character each so that the rules read like the shapes they match:
#   s string  S string left open at the end  n number  v @variable  w bareword  k keyword
#   U union   B clause keyword  & logical op  c comparison  a arithmetic  ! not
#   E true/false/null  f function call  C comment  ; , ( ) punctuation  x anything else
_WS = re.compile(r"[\s\x0b]+")
_NUM = re.compile(r"0x[0-9a-f]+|0b[01]+|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?", re.I)
_WORD = re.compile(r"(?:[^\W\d]|[@$])[\w$@.]*")
_OP = re.compile(r"<=>|<>|!=|<=|>=|\|\||&&|::|:=|!<|!>|[=<>|&^~+\-*/%!]")
_SQ = re.compile(r"(?:[^'\\]|\\[\s\S]|'')*('?)")
_DQ = re.compile(r"(?:[^\"\\]|\\[\s\S]|\"\")*(\"?)")
_BQ = re.compile(r"[^`]*(`?)")
_LINE = re.compile(r"[^\n]*")

_LOGIC = frozenset({"or", "and", "xor", "||", "&&"})
_COMPARE_WORDS = frozenset(
    {"like", "rlike", "regexp", "is", "in", "between", "sounds", "glob", "similar", "ilike"}
)
_COMPARE_OPS = frozenset({"=", "<", ">", "<=", ">=", "<>", "!=", "<=>", "!<", "!>"})
_ARITH_WORDS = frozenset({"div", "mod"})
_LITERALS = frozenset({"true", "false", "null", "unknown"})
_CLAUSES = frozenset({"having", "limit", "procedure", "into", "offset", "where"})
_STATEMENTS = frozenset(
    {
        "select",
        "insert",
        "update",
        "delete",
        "drop",
        "exec",
        "execute",
        "declare",
        "waitfor",
        "shutdown",
        "create",
        "alter",
        "truncate",
        "grant",
        "revoke",
        "load",
        "handler",
        "call",
        "begin",
        "set",
        "use",
        "if",
        "merge",
        "print",
        "kill",
        "rename",
        "replace",
        "copy",
    }
)
_KEYWORDS = _STATEMENTS | frozenset(
    {"from", "values", "table", "database", "case", "when", "then", "else", "end"}
    | {"exists", "all", "distinct", "delay", "outfile", "dumpfile", "order", "group", "by"}
)
# Functions whose only use in a value is an attack: time delays for blind injection, file and
# network access, error-based extraction.
_DANGEROUS = frozenset(
    {
        "sleep",
        "benchmark",
        "pg_sleep",
        "randomblob",
        "load_file",
        "extractvalue",
        "updatexml",
        "xp_cmdshell",
        "xp_regread",
        "xp_dirtree",
        "dbms_pipe.receive_message",
        "dbms_lock.sleep",
        "utl_http.request",
        "utl_inaddr.get_host_address",
        "sys_eval",
        "sys_exec",
        "pg_read_file",
        "lo_import",
        "get_lock",
        "exp",
        "geometrycollection",
        "polygon",
        "multipoint",
        "name_const",
        "gtid_subset",
        "json_keys",
        "ctxsys.drithsx.sn",
    }
)
#: Every word the tokenizer reads as something other than a plain bareword (``w``): after a
#: quote, only these (or a word called like a function) can start SQL syntax. The screens read it.
SYNTAX_WORDS = frozenset(
    word
    for word in _LOGIC | _COMPARE_WORDS | _ARITH_WORDS | _LITERALS | _CLAUSES | _KEYWORDS
    if word[:1].isalpha()  # "||" and "&&" are operators, not words
) | {"not", "union"}
#: Bare values are tokenized only when they hold one of these words (or ``xp_...``, ``||``,
#: ``&&``, ``/*!``): an injection outside quotes has to use one of them, and skipping the rest
#: keeps ordinary text (User-Agent strings) cheap. The engine reads the same set to decide
#: whether a value needs this detector at all.
BARE_WORDS = frozenset(
    {"or", "and", "xor", "union", "order", "group", "having", "limit", "procedure", "into"}
    | {"select", "waitfor", "declare", "exec", "execute", "insert", "update", "delete", "drop"}
    | {"shutdown", "truncate", "create", "alter", "sleep", "benchmark", "pg_sleep", "randomblob"}
    | {"load_file", "extractvalue", "updatexml"}
)
_BARE_WORD_BYTES = frozenset(w.encode("ascii") for w in BARE_WORDS)
_WORD_RUN = re.compile(r"\w+")
_XP = re.compile(r"\bxp_\w")
#: Lower-cased ASCII: every byte outside [a-z0-9_] becomes a space, so split() gives the runs of
#: \w that the regex module would see (the screens split words the same way).
WORD_SPLIT = bytes(
    b if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 0x20 for b in range(256)
)


def _bare_anchor(low: str) -> bool:
    """Does the lowered value hold a word of BARE_WORDS, ``xp_...``, ``||``, ``&&`` or ``/*!``?

    A word must be a whole run of word characters (what ``\\bor\\b`` means). Splitting is several
    times cheaper than one alternation regex over the value, which Python's engine tries
    at every position (measured with callgrind on User-Agent strings and prose).
    """
    if "||" in low or "&&" in low or "/*!" in low:
        return True
    if "xp_" in low and _XP.search(low):
        return True
    if low.isascii():
        return not _BARE_WORD_BYTES.isdisjoint(low.encode("ascii").translate(WORD_SPLIT).split())
    return not BARE_WORDS.isdisjoint(_WORD_RUN.findall(low))


_WINDOW = 12
_CANDIDATES = 4


def tokenize(text: str, limit: int | None = None, start: int = 0) -> list[Token]:
    """SQL tokens of ``text[start:]`` (whitespace dropped, comments kept as ``C``).

    ``limit`` stops after that many tokens: the rules for a quoted context only need the first
    few tokens after the break.
    """
    out: list[Token] = []
    pos, n = start, len(text)
    while pos < n and (limit is None or len(out) < limit):
        c = text[pos]
        if c.isspace() or c == "\x0b":
            m = _WS.match(text, pos)
            pos = m.end() if m else pos + 1
            continue
        if c == "'" or c == '"' or c == "`":
            pattern = _SQ if c == "'" else _DQ if c == '"' else _BQ
            m = pattern.match(text, pos + 1)
            assert m is not None  # noqa: S101 - every branch of the pattern can match empty
            closed = bool(m.group(1))
            body = text[pos + 1 : m.end() - (1 if closed else 0)]
            if c == "`":
                out.append(("w", body.lower()))  # MySQL identifier quoting
            else:
                out.append(("s" if closed else "S", body))
            pos = m.end()
            continue
        if c == "#" or (c == "-" and text.startswith("--", pos)):
            m = _LINE.match(text, pos)
            out.append(("C", ""))
            pos = m.end() if m else n
            continue
        if c == "/" and text.startswith("/*", pos):
            if text.startswith("/*!", pos):
                # MySQL executable comment: its body is code, so read through it.
                pos += 3
                while pos < n and text[pos].isdigit():
                    pos += 1
                continue
            end = text.find("*/", pos + 2)
            if end < 0:
                out.append(("C", ""))  # an open comment cuts the rest of the query off
                pos = n
            else:
                pos = end + 2  # a closed one is whitespace: uni/**/on tricks filters, not SQL
            continue
        if c == "*" and text.startswith("*/", pos):
            pos += 2  # the end of an executable comment
            continue
        if c.isdigit() or (c == "." and pos + 1 < n and text[pos + 1].isdigit()):
            m = _NUM.match(text, pos)
            if m:
                out.append(("n", m.group().lower()))
                pos = m.end()
                continue
        m = _WORD.match(text, pos)
        if m:
            word = m.group().lower()
            pos = m.end()
            if len(word) == 1 and word in "nxbe" and pos < n and text[pos] == "'":
                continue  # N'text', X'41', B'01', E'\n': prefixes of a string literal
            out.append(_classify(word, text, pos))
            continue
        m = _OP.match(text, pos)
        if m:
            op = m.group()
            pos = m.end()
            if op in _LOGIC:
                out.append(("&", op))
            elif op in _COMPARE_OPS:
                out.append(("c", op))
            elif op == "!":
                out.append(("!", op))
            else:
                out.append(("a", op))
            continue
        if c in "(),;":
            out.append((c, c))
        else:
            out.append(("x", c))
        pos += 1
    return _merge(out)


def _classify(word: str, text: str, pos: int) -> Token:
    if word[0] == "@":
        return ("v", word)
    if word in _LOGIC:
        return ("&", word)
    if word in _COMPARE_WORDS:
        return ("c", word)
    if word in _ARITH_WORDS:
        return ("a", word)
    if word in _LITERALS:
        return ("E", word)
    if word == "not":
        return ("!", word)
    if word == "union":
        return ("U", word)
    # A word directly followed by "(" is a call, whatever its name (SQL allows a space only in
    # some dialects, so one run of spaces is accepted too).
    m = _WS.match(text, pos)
    nxt = m.end() if m else pos
    if nxt < len(text) and text[nxt] == "(" and word not in _KEYWORDS:
        return ("f", word)
    if word in _CLAUSES:
        return ("B", word)
    if word in _KEYWORDS:
        return ("k", word)
    return ("w", word)


def _merge(tokens: list[Token]) -> list[Token]:
    # "order by" and "group by" are one clause token; "union all select" is "union select".
    out: list[Token] = []
    for tok in tokens:
        if out:
            prev = out[-1]
            if tok == ("k", "by") and prev[1] in ("order", "group"):
                out[-1] = ("B", prev[1] + " by")
                continue
            if prev[0] == "U" and tok[1] in ("all", "distinct"):
                continue
        out.append(tok)
    return out


_OPERAND = frozenset("sSnvwEf(")


def _window(tokens: list[Token], start: int) -> list[Token]:
    out: list[Token] = []
    for tok in tokens[start : start + _WINDOW]:
        if tok[0] in "&;C":
            break
        out.append(tok)
    return out


def _after_logic(tokens: list[Token], i: int, quoted: bool) -> int:
    """Score of the expression after the logical operator at ``tokens[i]``."""
    win = _window(tokens, i + 1)
    nxt = i + 1 + len(win)
    ends_in_comment = nxt < len(tokens) and tokens[nxt][0] == "C"
    types = [t for t, _ in win if t not in "()!"]
    if not types:
        return 0
    if quoted and types[-1] == "S" and nxt >= len(tokens) and all(t in "sS" for t in types):
        # "admin' or '": the string left open is closed by the application's own quote, so
        # the query reads 'admin' or '' -- a complete boolean expression, not prose.
        return 75
    score = 0
    calls = 0
    for j, (t, v) in enumerate(win):
        if t == "k" and v in ("select", "exists"):
            return 90
        if t == "f":
            calls += 1
            score = max(score, 85 if quoted or v in _DANGEROUS else 60)
        elif t == "w" and v in _DANGEROUS:
            score = max(score, 85 if quoted else 60)
        elif t == "c":
            if _literal_comparison(win, j, quoted):
                score = max(score, 85)
        elif t == "a" and quoted:
            if _operand_before(win, j) and _operand_after(win, j):
                score = max(score, 80)
        elif t == "E" and types[0] == "E":
            # "or true" ends the expression; "true or false that..." is prose.
            after = win[j + 1][0] if j + 1 < len(win) else ""
            if after in ("", ")"):
                score = max(score, 80 if quoted else 70)
    if calls >= 2:
        score = max(score, 80)  # nested calls: ||(elt(-3+5,bin(15),ord(10)))
    if score:
        return max(score, 80) if ends_in_comment and score >= 50 else score
    if ends_in_comment and len(types) == 1:
        return 80 if quoted or types[0] in "nsE" else 20  # ' or 1--   1 or true#
    if len(types) == 1:
        return 60 if quoted else 20
    return 45 if quoted else 10


def _literal_comparison(win: list[Token], j: int, quoted: bool) -> bool:
    """Is ``win[j]`` a comparison an injection would write (``1=1``, ``'a'='a'``, ``x=x``)?

    After a quote break any comparison counts. In a bare value the operands must be literals,
    a call, or the same name twice: "cats = pets" or "E=mc" in prose are not tautologies.
    """
    left = _operand_before(win, j)
    right = _operand_after(win, j)
    if left is None or right is None:
        return False
    if quoted:
        return True
    if left[0] == "w" and right[0] == "w":
        return left[1] == right[1]
    if left[0] == "w" or right[0] == "w":
        return "f" in (left[0], right[0])  # username like char(37)
    return True


def _operand_before(win: list[Token], j: int) -> Token | None:
    for t in reversed(win[:j]):
        if t[0] in "()":
            continue
        return t if t[0] in _OPERAND or t[0] == ")" else None
    return None


def _operand_after(win: list[Token], j: int) -> Token | None:
    for t in win[j + 1 :]:
        if t[0] in "()!":
            continue
        return t if t[0] in _OPERAND or t[0] == "a" else None
    return None


def _expression_start(tokens: list[Token]) -> int:
    """In a bare value, the index where an injected logical operator would stand.

    An injected value is one operand (``1``, ``x``, ``'a'``), maybe closed with ``)`` or
    ``;``, then the operator: ``1 or 1=1``, ``1)) or ((1=1``, ``; or 1=1``. An operator deeper
    in a sentence ("H2O and E=mc2") continues prose, not a query.
    """
    j = 0
    if tokens and tokens[0][0] in "sSnvwE":
        j = 1
    while j < len(tokens) and tokens[j][0] in ");":
        j += 1
    return j


def _statement_follows(tokens: list[Token], i: int) -> int:
    """Score of a statement starting at ``tokens[i]`` (after ``;``)."""
    if i >= len(tokens):
        return 0
    t, v = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else _END
    if t == "f" and v in _DANGEROUS:
        return 90
    if t == "w" and v.startswith(("xp_", "sp_", "master.")):
        return 90
    if t not in "kw":
        return 0
    pairs = {
        "select": "nvfaw(sE",
        "insert": "k",
        "update": "w",
        "delete": "k",
        "drop": "kw",
        "exec": "wf(v",
        "execute": "wf(v",
        "declare": "v",
        "waitfor": "kw",
        "shutdown": "C",
        "truncate": "kw",
        "create": "kw",
        "alter": "kw",
        "set": "v",
        "begin": "kdw",
        "if": "(",
        "print": "v",
    }
    wanted = pairs.get(v)
    if wanted is None:
        return 0
    if v == "shutdown" and nxt[0] in "_C;":
        return 90
    if nxt[0] in wanted:
        return 90
    return 40


def _rules(tokens: list[Token], quoted: bool) -> int:
    """Score the SQL shapes anywhere in ``tokens``."""
    best = 0
    n = len(tokens)
    start = _expression_start(tokens)
    for i, (t, v) in enumerate(tokens):
        if t == "U":
            j = i + 1
            while j < n and tokens[j][0] == "(":
                j += 1
            if j < n and tokens[j] == ("k", "select"):
                return 95
        elif t == ";":
            best = max(best, _statement_follows(tokens, i + 1))
        elif t == "&":
            if quoted or i == start:
                best = max(best, _after_logic(tokens, i, quoted))
        elif t == "B":
            prev = tokens[i - 1][0] if i else "_"
            nxt = tokens[i + 1] if i + 1 < n else _END
            if i == 0 or prev in "nsS)C" or quoted:
                if nxt[0] in "nfv" or (v == "into" and nxt[1] in ("outfile", "dumpfile")):
                    best = max(best, 80)
            if v == "having" or v == "where":
                win = _window(tokens, i + 1)
                if any(
                    tok[0] == "c" and _literal_comparison(win, j, quoted)
                    for j, tok in enumerate(win[:3])
                ):
                    best = max(best, 85)
        elif t == "f" and v in _DANGEROUS:
            prev = tokens[i - 1][0] if i else "_"
            arg = tokens[i + 2][0] if i + 2 < n else "_"
            # sleep(5), benchmark(10,...), load_file(char(...)); "Sleep (deep) mask" is a name.
            if (i == 0 or prev in "&ac(,;C" or quoted) and arg in "nfsv":
                best = max(best, 85)
        elif t == "k":
            nxt = tokens[i + 1] if i + 1 < n else _END
            if v == "waitfor" and nxt[1] == "delay":
                return 90
            if v == "declare" and nxt[0] == "v":
                best = max(best, 85)
            elif v in ("exec", "execute") and (
                nxt[0] == "v"
                or (nxt[0] == "(" and i + 2 < n and tokens[i + 2][0] in "sv")
                or nxt[1].startswith(("xp_", "sp_", "master."))
            ):
                best = max(best, 85)  # exec(@s), exec('sel' + 'ect'), exec master..xp_cmdshell
            elif v == "if" and nxt[0] == "(" and (i == 0 or tokens[i - 1][0] in ";&"):
                win = _window(tokens, i + 2)
                if any(
                    tok[0] == "c" and _literal_comparison(win, j, quoted)
                    for j, tok in enumerate(win[:3])
                ):
                    best = max(best, 75)  # MSSQL's IF (1=1) statement, MySQL's IF(1=1,...)
            elif (
                v == "select"
                and i
                and tokens[i - 1][0] == "("
                and (i == 1 or tokens[i - 2][0] in "c&a(,U")
            ):
                best = max(best, 85)  # a subquery where a value goes: RLIKE (SELECT ...)
            elif v == "select" and (i == 0 or tokens[i - 1][0] == "("):
                after = tokens[i + 2] if i + 2 < n else _END
                if nxt[0] == "v" or (
                    (nxt[0] in "nEf" or nxt == ("a", "*"))
                    and (after[0] in ",_C)" or after == ("k", "from"))
                ):
                    best = max(best, 80)  # SELECT 1,2  SELECT @@version  SELECT * FROM
        if best >= 95:
            return best
    return best


def _closing_quote(value: str, quote: str, pos: int = 0) -> int:
    """Index of the first quote from ``pos`` that ends a literal, or -1."""
    n = len(value)
    while True:
        i = value.find(quote, pos)
        if i < 0:
            return -1
        backslashes = 0
        j = i - 1
        while j >= 0 and value[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2:
            pos = i + 1  # \' is an escaped quote (MySQL, PostgreSQL with standard strings off)
            continue
        if i + 1 < n and value[i + 1] == quote:
            pos = i + 2  # '' is an escaped quote in every dialect
            continue
        return i


def _quoted_score(value: str, quote: str) -> int:
    """Best score over the quotes of ``value`` that could end the literal it was put in.

    The first unescaped quote is where a strict lexer breaks out. Later quotes are tried too
    (at most ``_CANDIDATES`` whose next tokens look like SQL), because applications strip,
    double or re-quote values in ways a strict lexer does not foresee.
    """
    best = 0
    pos = 0
    full = 0
    while full < _CANDIDATES and best < 95:
        end = _closing_quote(value, quote, pos)
        if end < 0:
            break
        score, tokenized = _breakout_score(value, end)
        if pos and score < 85:
            # A later quote is a guess, not what a lexer does: only shapes that are injections
            # whatever came before count there ("It's great" -- a customer, is prose).
            score = min(
                score, _rules(tokenize(value, start=end + 1), quoted=True) if tokenized else 0
            )
        best = max(best, score)
        full += tokenized
        pos = end + 1
    # A doubled quote is an escaped quote to a strict lexer, but an application that strips
    # one of the pair, or builds the literal with another quote style, breaks out at the second
    # ('"a"" or 1=1--"'). Only shapes that are injections whatever came before count there.
    pos = 0
    for _ in range(_CANDIDATES):
        if best >= 85:
            break
        pair = value.find(quote + quote, pos)
        if pair < 0:
            break
        score = _rules(tokenize(value, start=pair + 2), quoted=True)
        if score >= 85:
            best = score
        pos = pair + 2
    return best


def _breakout_score(value: str, end: int) -> tuple[int, int]:
    """Score of the SQL after the quote at ``end``, and 1 if the whole tail was tokenized."""
    head = tokenize(value, limit=3, start=end + 1)
    k = 0
    while k < len(head) and head[k][0] == ")":
        k += 1
    if k == len(head):
        return (10 if k == 0 else 30), 0
    first = head[k][0]
    # A bareword, number or string right after the quote is prose (O'Brien, "5' 10''"), never
    # a working injection: the SQL would not parse.
    if first in "wnsSvx,(":
        return 0, 0
    tail = tokenize(value, start=end + 1)
    while tail and tail[0][0] == ")":
        tail.pop(0)
    if not tail:
        return 0, 1
    t, v = tail[0]
    if t == "C":
        return 80, 1
    nxt = tail[1] if len(tail) > 1 else _END
    if t == "a" or t == "c":
        if nxt[0] == "f":
            return 85, 1
        if nxt[0] in "sS":
            return 75, 1
        return max(50, _rules(tail, quoted=True)), 1
    if t == ";":
        if nxt[0] in "_C":
            return 70, 1
        return max(60, _statement_follows(tail, 1), _rules(tail, quoted=True)), 1
    return _rules(tail, quoted=True), 1


def score_sqli(value: str) -> int:
    """How sure we are (0-100) that ``value`` injects SQL into a query it is pasted into."""
    best = 0
    if "'" in value:
        best = _quoted_score(value, "'")
    if best < 95 and '"' in value:
        best = max(best, _quoted_score(value, '"'))
    if best < 95 and _bare_anchor(value.lower()):
        best = max(best, _rules(tokenize(value), quoted=False))
    return best
