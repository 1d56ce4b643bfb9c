"""Loading a policy file: safe YAML, duplicate keys refused, errors with file, line and field.

YAML is parsed with PyYAML's safe loader only (no object construction). Duplicate mapping keys
are refused because PyYAML would silently keep the last one, which lets a reviewer read one
setting while the gateway enforces another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from apishield.errors import PolicyError
from apishield.policy.models import Listen, Policy, TLSFiles, cross_check

Loc = tuple[str | int, ...]


class PolicyProblems(PolicyError):
    """Every problem found in one policy file, each on its own line."""

    def __init__(self, problems: list[PolicyError]):
        self.problems = problems
        first = problems[0]
        super().__init__(first.message, file=first.file, line=first.line, field=first.field)

    def __str__(self) -> str:
        return "\n".join(p.location_message() for p in self.problems)


class _Loader(yaml.SafeLoader):
    pass


def _compose(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    try:
        _refuse_aliases(text, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise PolicyError(f"not valid YAML: {problem}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise PolicyError("not valid YAML", file=file) from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the file is empty", file=file, line=1)
        lines: dict[Loc, int] = {}
        _index(node, (), lines, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise PolicyError(f"not valid YAML: {problem}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise PolicyError("not valid YAML", file=file) from exc
    finally:
        loader.dispose()
    return data, lines


def _refuse_aliases(text: str, file: str) -> None:
    """Anchors, aliases and merge keys are refused: a policy must read as it is enforced.

    An alias can make one setting silently apply elsewhere (``<<: *defaults`` hiding an
    ``allow: public``), and nested aliases expand exponentially (the "billion laughs").
    """
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            raise PolicyError(
                "YAML anchors and aliases are not allowed in a policy; write each setting out",
                file=file,
                line=token.start_mark.line + 1,
            )


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == "<<":
                raise PolicyError(
                    "YAML merge keys ('<<') are not allowed in a policy",
                    file=file,
                    line=key_node.start_mark.line + 1,
                )
            if key in seen:
                raise PolicyError(
                    f"the key {key!r} appears twice",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    field=_field((*loc, key)),
                )
            seen.add(key)
            _index(value_node, (*loc, key), lines, file)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, file)


def field_name(loc: Loc) -> str:
    """``("routes", 2, "methods")`` → ``routes[2].methods``."""
    return _field(loc)


def line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of ``loc``, or of its nearest ancestor present in the file."""
    return _line(loc, lines)


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _data_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Keep the parts of a pydantic location that address the data (drop union tags)."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            kept.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            kept.append(part)
            node = node[part]
        elif isinstance(part, str) and _is_union_tag(part):
            continue  # pydantic names the union branch it tried; not part of the data
        elif isinstance(part, str):
            kept.append(part)  # a missing required key names the field
            node = None
    return tuple(kept)


_TYPE_TAGS = frozenset(
    {"str", "int", "float", "bool", "date", "list", "dict", "none", "is-instance"}
)


def _is_union_tag(part: str) -> bool:
    return part in _TYPE_TAGS or part[:1].isupper() or any(c in part for c in "[-(")


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if error.get("type") == "extra_forbidden":
        msg = "unknown setting (check the spelling; see `apishield schema`)"
    elif error.get("type") == "missing":
        msg = "required setting is missing"
    return msg


def _line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def parse_policy(
    data: Any, *, file: str = "<policy>", lines: dict[Loc, int] | None = None
) -> Policy:
    """Validate already-parsed policy data (a mapping) into a ``Policy``."""
    lines = lines or {}
    if not isinstance(data, Mapping):
        raise PolicyError("the policy must be a mapping of settings", file=file, line=1)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        found: dict[Loc, PolicyError] = {}
        for error in exc.errors(include_url=False):
            loc = _data_loc(tuple(error["loc"]), data)
            if loc not in found:
                found[loc] = PolicyError(
                    _message(error), file=file, line=_line(loc, lines), field=_field(loc)
                )
        # a union reports each branch: keep the deepest location for each field
        problems = [
            problem
            for loc, problem in found.items()
            if not any(other[: len(loc)] == loc and other != loc for other in found)
        ]
        raise PolicyProblems(problems) from None
    crossed = cross_check(policy)
    if crossed:
        raise PolicyProblems(
            [
                PolicyError(msg, file=file, line=_line(loc, lines), field=_field(loc))
                for loc, msg in crossed
            ]
        )
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read, validate and resolve a policy file; relative paths are taken from its folder."""
    return load_policy_with_lines(path)[0]


def load_policy_with_lines(path: str | Path) -> tuple[Policy, dict[Loc, int]]:
    """``load_policy``, plus the line of every field (for messages about valid policies)."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the file ({type(exc).__name__})", file=str(path)) from None
    data, lines = _compose(text, name)
    policy = parse_policy(data, file=name, lines=lines)
    return resolve_paths(policy, path.resolve().parent), lines


def resolve_paths(policy: Policy, base: Path) -> Policy:
    """Make the policy's file paths absolute, relative to ``base``."""

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    listen = policy.listen
    if isinstance(listen.tls, TLSFiles):
        tls = TLSFiles(cert=absolute(listen.tls.cert), key=absolute(listen.tls.key))
        listen = Listen.model_validate({**listen.model_dump(), "tls": tls})
    state_dir = absolute(policy.state.dir)
    store = policy.state.store
    if store is not None and store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        store = f"sqlite:///{absolute(Path(store[len('sqlite:///') :]))}"
    def file_reference(ref: str) -> str:
        # `file:PATH` secrets resolve from the policy's folder like every other path in it,
        # not from wherever the gateway happens to be started.
        if ref.startswith("file:") and not Path(ref[5:]).is_absolute():
            return f"file:{absolute(Path(ref[5:]))}"
        return ref

    secret = policy.state.secret_key
    if secret is not None:
        secret = file_reference(secret)
    state = policy.state.model_copy(update={"dir": state_dir, "store": store, "secret_key": secret})
    update: dict[str, object] = {"listen": listen, "state": state}
    introspection = policy.identity.introspection if policy.identity is not None else None
    if introspection is not None and policy.identity is not None:
        introspection = introspection.model_copy(
            update={"client_secret": file_reference(introspection.client_secret)}
        )
        update["identity"] = policy.identity.model_copy(update={"introspection": introspection})
    if policy.openapi is not None:
        update["openapi"] = policy.openapi.model_copy(
            update={"spec": absolute(policy.openapi.spec)}
        )
    return policy.model_copy(update=update)


def coerce_policy(policy: Policy | Mapping[str, Any] | str | Path) -> Policy:
    """Accept a ``Policy``, a mapping, or a path to a policy file."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Mapping):
        return resolve_paths(parse_policy(policy), Path.cwd())
    return load_policy(policy)
