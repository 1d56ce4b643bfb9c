"""Path traversal after decoding (double, overlong, %u, backslashes), and ordinary paths."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector
from apishield.inspect.traversal import score_traversal

ATTACKS = [
    pytest.param("../../../etc/passwd", id="dot-dot-slash"),
    pytest.param("..\\..\\windows\\win.ini", id="backslashes"),
    pytest.param("%2e%2e%2f%2e%2e%2fetc%2fpasswd", id="percent-encoded"),
    pytest.param("%252e%252e%252f%252e%252e%252fetc%252fpasswd", id="double-encoded"),
    pytest.param("%%32%65%%32%65/%%32%65%%32%65/etc/passwd", id="nested-percent"),
    pytest.param("..%c0%af..%c0%afetc%c0%afpasswd", id="overlong-slash"),
    pytest.param("%c0%ae%c0%ae/%c0%ae%c0%ae/boot.ini", id="overlong-dot"),
    pytest.param("..%c1%9c..%c1%9cwindows%c1%9cwin.ini", id="overlong-backslash"),
    pytest.param("%u002e%u002e%u2215%u002e%u002e%u2215etc%u2215passwd", id="iis-unicode"),
    pytest.param("....//....//etc/passwd", id="stripped-once"),
    pytest.param("/etc/shadow", id="absolute-sensitive"),
    pytest.param("C:\\boot.ini", id="windows-absolute"),
    pytest.param("../../WEB-INF/web.xml", id="java-web-inf"),
    pytest.param("../.htaccess", id="one-level-sensitive"),
    pytest.param("php://filter/convert.base64-encode/resource=index.php", id="php-wrapper"),
    pytest.param("file:///etc/passwd", id="file-url"),
    pytest.param("../../../etc/passwd%00.png", id="nul-truncation"),
    pytest.param("/./././etc/passwd", id="dot-segments"),
]
BENIGN = [
    pytest.param("photos/2024/summer/beach.png", id="relative-path"),
    pytest.param("notes..txt", id="double-dot-in-name"),
    pytest.param("https://example.com/a/b/../c", id="url-one-level"),
    pytest.param("web.config.sample", id="sensitive-looking-file-name"),
    pytest.param("How do I edit /etc/hosts on a Mac?", id="prose-mentions-path"),
    pytest.param("~/Documents/cv.pdf", id="home-path"),
    pytest.param("C:\\Users\\anna\\Desktop\\todo.txt", id="windows-user-path"),
    pytest.param("passwd-reset-instructions.pdf", id="passwd-in-name"),
    pytest.param("...and that's it", id="ellipsis"),
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found(inspector: Inspector, value: str) -> None:
    assert "traversal" in [c for c, _ in inspector.score_value(value)]


@pytest.mark.parametrize("value", BENIGN)
def test_near_misses_pass(inspector: Inspector, value: str) -> None:
    assert inspector.score_value(value) == []


def test_a_single_parent_directory_is_weaker_evidence() -> None:
    assert 50 <= score_traversal("../sibling/file.txt") < 70
    assert score_traversal("../../a") >= 70
