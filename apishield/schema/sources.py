"""The files of an OpenAPI document and the ``$ref`` between them, read safely and located.

Trust: the spec is written by the API's own team, but it is parsed before anything else runs,
so a mistake or a hostile file must end in a one-line error, never a hang or a traceback.

- YAML with PyYAML's safe composer only; duplicate keys are refused (PyYAML keeps the last,
  so a reviewer could read one schema while the gateway enforces another). Anchors and aliases
  are allowed, since some specs share fragments with them, but their expansion is bounded:
  nested aliases grow exponentially (the "billion laughs") and would hang start-up.
- Scalars are read as YAML 1.2 core types (what OpenAPI 3 specifies): ``yes``/``no``/``on``
  stay strings and dates stay strings, so ``enum: [no, yes]`` means what it says.
- ``$ref`` may reach files in the spec's folder and below only: a spec is a reviewable bundle,
  and a reference out of it (``../../etc/passwd``) would make the gateway read arbitrary files
  into error messages. Remote references are refused: a gateway must not fetch from the
  network at start-up (a slow or hostile host would decide whether it starts and what it
  enforces).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from apishield.errors import ConfigError

__all__ = ["Document", "Documents", "Pointer", "SpecError"]

Pointer = tuple[str, ...]

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
MAX_FILES = 256
MAX_NODES = 1_000_000  # per file, counting every alias expansion
MAX_DEPTH = 128
MAX_REF_HOPS = 64

# YAML 1.2 core schema (§10.3.2), for plain scalars
_NUMERIC_OR_TEXT = frozenset(
    {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str"}
)
_INT_12 = re.compile(r"[-+]?[0-9]+")
_BASED_12 = re.compile(r"0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_12 = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_12 = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_TOO_LONG = "an integer has more digits than can be read (at most 4300)"
_Composer: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecError(ConfigError):
    """An OpenAPI spec problem, located: ``openapi.yaml:42: paths./orders.post: message``."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, field: str = ""):
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = file or "<spec>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        # Keys and values of the spec appear in messages: one line, whatever they hold.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


@dataclass(slots=True)
class Document:
    """One parsed file: its data and the line of every node, keyed by JSON pointer."""

    path: Path  # resolved
    display: str  # as the user would write it, for messages
    data: Any
    lines: dict[Pointer, int] = field(default_factory=dict)

    def line_of(self, pointer: Pointer) -> int | None:
        for end in range(len(pointer), -1, -1):
            line = self.lines.get(pointer[:end])
            if line is not None:
                return line
        return None

    def field_of(self, pointer: Pointer) -> str:
        """The dotted field of ``pointer``: ``paths./orders.post.parameters[0]``."""
        out = ""
        node = self.data
        for part in pointer:
            if isinstance(node, list) and _is_index(part):
                out += f"[{part}]"
                node = node[int(part)] if int(part) < len(node) else None
            else:
                out += f".{part}" if out else part
                node = node.get(part) if isinstance(node, dict) else None
        return out

    def error(self, pointer: Pointer, message: str) -> SpecError:
        return SpecError(
            message, file=self.display, line=self.line_of(pointer), field=self.field_of(pointer)
        )


def escape(part: str) -> str:
    """One JSON pointer segment (RFC 6901 §3)."""
    return part.replace("~", "~0").replace("/", "~1")


def pointer_text(pointer: Pointer) -> str:
    return "#" + "".join("/" + escape(p) for p in pointer)


class Documents:
    """The root spec file and every file its references reach, each read once."""

    def __init__(self, root: str | Path) -> None:
        self.given = Path(root)
        try:
            self.root_path = self.given.resolve(strict=True)
        except (OSError, RuntimeError):
            raise SpecError("no such file", file=str(root)) from None
        self.base = self.root_path.parent
        self.docs: dict[Path, Document] = {}
        self.total_bytes = 0
        self.root = self._load(self.root_path, str(root), None)

    # -- files -----------------------------------------------------------------------------

    def _display(self, path: Path) -> str:
        return str(self.given.parent / path.relative_to(self.base))

    def _load(self, path: Path, display: str, referrer: SpecError | None) -> Document:
        known = self.docs.get(path)
        if known is not None:
            return known
        if len(self.docs) >= MAX_FILES:
            raise _at(referrer, f"the spec spans more than {MAX_FILES} files")
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise _at(referrer, f"{display} is not a file")
        except OSError:
            raise _at(referrer, f"{display}: no such file") from None
        if size > MAX_FILE_BYTES:
            raise SpecError(
                f"the file is {size} bytes; spec files are limited to {MAX_FILE_BYTES} bytes",
                file=display,
            )
        self.total_bytes += size
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise _at(referrer, f"the spec's files add up to more than {MAX_TOTAL_BYTES} bytes")
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:  # it grew since stat()
                raise SpecError(f"the file is over {MAX_FILE_BYTES} bytes", file=display)
            text = raw.decode("utf-8-sig")
        except OSError as exc:
            raise SpecError(f"cannot read the file ({type(exc).__name__})", file=display) from None
        except UnicodeDecodeError:
            raise SpecError("the file is not UTF-8 text", file=display) from None
        if path.suffix.lower() == ".json":
            data, lines = _parse_json(text, display)
        else:
            data, lines = _parse_yaml(text, display)
        doc = Document(path, display, data, lines)
        self.docs[path] = doc
        return doc

    # -- references --------------------------------------------------------------------------

    def target(self, doc: Document, pointer: Pointer, ref: object) -> tuple[Document, Pointer]:
        """Where ``ref`` (found at ``doc#pointer``) points; the target must exist."""
        if not isinstance(ref, str):
            raise doc.error(pointer, "$ref must be a string")
        parts = urlsplit(ref)
        if parts.scheme in ("http", "https"):
            raise doc.error(
                pointer,
                f"remote $ref {ref!r} refused: the gateway does not fetch from the network at "
                "start-up; save the file next to the spec and refer to it by relative path",
            )
        if parts.scheme or parts.netloc or parts.query:
            raise doc.error(
                pointer, f"$ref {ref!r}: only relative file paths and #/json/pointers are supported"
            )
        file_part, _, fragment = ref.partition("#")
        fragment = unquote(fragment)  # RFC 6901 §6: percent-decoding comes before ~ unescaping
        file_part = unquote(file_part)
        if "\x00" in file_part:  # no file name holds one; the OS would refuse it with a ValueError
            raise doc.error(pointer, f"$ref {ref!r}: a file path cannot contain NUL")
        if fragment and not fragment.startswith("/"):
            raise doc.error(
                pointer,
                f"$ref {ref!r}: anchors are not supported; use a JSON pointer such as "
                "#/components/schemas/Name",
            )
        target_pointer = tuple(
            p.replace("~1", "/").replace("~0", "~") for p in fragment.split("/")[1:]
        )
        target_doc = doc
        if file_part:
            path = (doc.path.parent / file_part).resolve()
            if not path.is_relative_to(self.base):
                raise doc.error(
                    pointer,
                    f"$ref {ref!r} leaves the spec's folder: references may reach files in "
                    "the spec's folder and below only",
                )
            referrer = doc.error(pointer, f"$ref {ref!r}")
            target_doc = self._load(path, self._display(path), referrer)
        if not _exists(target_doc.data, target_pointer):
            raise doc.error(
                pointer,
                f"$ref {ref!r}: {target_doc.display} has nothing at {pointer_text(target_pointer)}",
            )
        return target_doc, target_pointer

    def resolve(self, doc: Document, pointer: Pointer) -> tuple[Document, Pointer, Any]:
        """Follow ``$ref`` from ``doc#pointer`` until a value that is not a reference."""
        seen: set[tuple[Path, Pointer]] = set()
        value = get(doc.data, pointer)
        while isinstance(value, dict) and "$ref" in value:
            key = (doc.path, pointer)
            if key in seen or len(seen) >= MAX_REF_HOPS:
                raise doc.error(pointer, f"$ref cycle: {value['$ref']!r} leads back here")
            seen.add(key)
            doc, pointer = self.target(doc, pointer, value["$ref"])
            value = get(doc.data, pointer)
        return doc, pointer, value

    def reference(self, doc: Document, pointer: Pointer) -> str:
        """``#/pointer`` in the root file, ``file#/pointer`` in another (for messages)."""
        if doc is self.root:
            return pointer_text(pointer)
        return doc.path.relative_to(self.base).as_posix() + pointer_text(pointer)


def _at(referrer: SpecError | None, message: str) -> SpecError:
    if referrer is None:
        return SpecError(message)
    return SpecError(
        f"{referrer.message}: {message}",
        file=referrer.file,
        line=referrer.line,
        field=referrer.field,
    )


def _is_index(part: str) -> bool:
    # RFC 6901 §4: an array index is ASCII digits; str.isdigit also accepts "²", which int()
    # refuses, and "١", which it reads as 1.
    return part.isascii() and part.isdigit() and len(part) <= 18  # int() of 18 digits is cheap


def get(data: Any, pointer: Pointer) -> Any:
    node = data
    for part in pointer:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _exists(data: Any, pointer: Pointer) -> bool:
    node = data
    for part in pointer:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and _is_index(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


# -- parsing -------------------------------------------------------------------------------


def _parse_json(text: str, display: str) -> tuple[Any, dict[Pointer, int]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise SpecError(f"the key {key!r} appears twice in one object", file=display)
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise SpecError(f"{name} is not JSON", file=display)

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):  # 1e400: as in YAML, a bound no schema can use
            raise SpecError(f"{text!r}: JSON has no NaN or infinity", file=display)
        return value

    try:
        data = json.loads(
            text, object_pairs_hook=pairs, parse_constant=constant, parse_float=number
        )
    except json.JSONDecodeError as exc:
        raise SpecError(f"not valid JSON: {exc.msg}", file=display, line=exc.lineno) from None
    except ValueError:  # an integer past Python's digit limit (CVE-2020-10735's bound)
        raise SpecError(_TOO_LONG, file=display) from None
    except RecursionError:
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels", file=display) from None
    try:
        # JSON is YAML's flow style: composing it again gives every node its line.
        node = yaml.compose(text, Loader=_Composer)
    except (yaml.YAMLError, RecursionError):
        return data, {}  # JSON that YAML does not read (tabs, say): errors name no line
    builder = _Builder(display)
    if node is not None:
        builder.build(node, ())  # also bounds the depth, as for YAML
    return data, builder.lines


def _yaml_error(exc: yaml.YAMLError, display: str) -> SpecError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        return SpecError(
            f"not valid YAML: {problem}", file=display, line=mark.line + 1 if mark else None
        )
    return SpecError("not valid YAML", file=display)


def _parse_yaml(text: str, display: str) -> tuple[Any, dict[Pointer, int]]:
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, display) from None
    except RecursionError:
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels", file=display) from None
    if node is None:
        raise SpecError("the file is empty", file=display, line=1)
    builder = _Builder(display)
    data = builder.build(node, ())
    return data, builder.lines


class _Builder:
    """YAML nodes to JSON values, with lines; aliases expanded under a node budget."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[Pointer, int] = {}
        self.count = 0
        self.active: set[int] = set()
        self.built: dict[int, tuple[Any, int]] = {}
        self.too_many = (
            f"more than {MAX_NODES} values once YAML aliases are expanded "
            "(nested aliases grow exponentially)"
        )

    def fail(self, node: yaml.Node, message: str, pointer: Pointer) -> SpecError:
        field = ".".join(pointer)
        return SpecError(message, file=self.display, line=node.start_mark.line + 1, field=field)

    def build(self, node: yaml.Node, pointer: Pointer) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, self.too_many, pointer)
        if len(pointer) > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels", pointer)
        self.lines.setdefault(pointer, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, pointer)
        if id(node) in self.active:
            raise self.fail(node, "a YAML alias refers to a node that contains it", pointer)
        known = self.built.get(id(node))
        if known is not None:  # an alias: the value is shared, its size still counts
            self.count += known[1]
            if self.count > MAX_NODES:
                raise self.fail(node, self.too_many, pointer)
            return known[0]
        before = self.count
        self.active.add(id(node))
        try:
            value = self.collection(node, pointer)
        finally:
            self.active.discard(id(node))
        self.built[id(node)] = (value, self.count - before)
        return value

    def collection(self, node: yaml.Node, pointer: Pointer) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*pointer, str(i))) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)  # noqa: S101 - the only other node kind
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "mapping keys must be plain values", pointer)
            key = str(key_node.value)
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(
                    key_node,
                    "YAML merge keys ('<<') are not part of YAML 1.2: write the keys out",
                    pointer,
                )
            if key in out:
                raise self.fail(key_node, f"the key {key!r} appears twice", (*pointer, key))
            self.lines[(*pointer, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*pointer, key))
        return out

    def scalar(self, node: yaml.ScalarNode, pointer: Pointer) -> Any:
        tag, text = node.tag, node.value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            # YAML 1.2 core schema: only true/false are booleans; yes/no/on/off are strings.
            return text.lower() == "true" if text.lower() in ("true", "false") else text
        if not node.style and tag in _NUMERIC_OR_TEXT:  # plain: None, or "" from libyaml
            # PyYAML resolves plain scalars by YAML 1.1: `010` is 8 there and 10 in YAML 1.2,
            # `1_000` a number and `1e5` a string. Re-read them by the 1.2 core schema, so
            # that `minimum: 010` means what every other OpenAPI tool reads.
            return self.number(node, pointer)
        return text  # strings, and timestamps or other tags kept as their text

    def number(self, node: yaml.ScalarNode, pointer: Pointer) -> Any:
        """A plain scalar by the YAML 1.2 core schema (§10.3.2): an int, a float or text."""
        text = node.value
        try:
            if _INT_12.fullmatch(text):
                return int(text)
            if _BASED_12.fullmatch(text):
                return int(text[2:], 8 if text[1] == "o" else 16)
        except ValueError:  # past Python's digit limit (CVE-2020-10735's bound)
            raise self.fail(node, _TOO_LONG, pointer) from None
        if _SPECIAL_12.fullmatch(text):
            raise self.fail(node, f"{text!r}: JSON has no NaN or infinity", pointer)
        if _FLOAT_12.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                raise self.fail(node, f"{text!r}: JSON has no NaN or infinity", pointer)
            return value
        return text
