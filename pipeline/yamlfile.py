"""YAML parsing for the configuration files, with libyaml's C parser where PyYAML has it.

The C parser reads ``config/topics.yaml`` ten times faster than the pure-Python one (about
8 ms against 80), and every process that classifies, links translations or polls reads
the configuration once at start. Both parsers build the same data from valid YAML and
raise :class:`yaml.YAMLError` on invalid YAML.

Stricter than YAML itself in one way: a mapping that holds a key twice is an error, not
"the last one wins". Config entries are made by copying an entry; a copy whose key was not
renamed would otherwise replace the original without a word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE):  # type: ignore[misc]
    """The safe loader (C parser when available), refusing duplicate keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<": a merged mapping's keys may be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first is not key_node:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found the key {key!r} twice (first on line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


# What a document may expand to through its aliases, in values counted as often as they
# are referred to: a billion-laughs document (each level a list of aliases of the one
# before) holds a few dozen nodes and expands to billions, which every reader that walks
# it (validation, a hash of the registry, an error message quoting a value) would build.
MAX_EXPANDED_VALUES = 1_000_000


def safe_load(text: str | bytes) -> Any:
    """``yaml.safe_load(text)``, parsed by the C parser when it is available, refusing a
    mapping that holds a key twice, and a document whose aliases expand it past
    :data:`MAX_EXPANDED_VALUES` values."""
    document = yaml.load(text, Loader=_Loader)  # noqa: S506  (a safe loader, C or Python)
    expanded = _expanded_size(document)
    if expanded > MAX_EXPANDED_VALUES:
        raise yaml.YAMLError(
            f"its aliases expand it to more than {MAX_EXPANDED_VALUES:,} values (an alias bomb?); "
            "write the values out instead"
        )
    return document


def _expanded_size(document: Any) -> int:
    """How many values ``document`` holds counted as often as they are referred to, in
    time linear in its distinct values (each shared container is measured once)."""
    sizes: dict[int, int] = {}
    # Containers in the order they are first met, then measured children first.
    order: list[Any] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if not isinstance(value, dict | list) or id(value) in sizes:
            continue
        sizes[id(value)] = -1  # (met)
        order.append(value)
        stack.extend(value.values() if isinstance(value, dict) else value)
        if isinstance(value, dict):
            stack.extend(value.keys())
    for value in reversed(order):
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += max(sizes.get(id(child), 1), 1) if isinstance(child, dict | list) else 1
            if total > MAX_EXPANDED_VALUES:
                break
        sizes[id(value)] = total
    return sizes.get(id(document), 1) if isinstance(document, dict | list) else 1


def read_file(path: Path) -> Any:
    """The YAML document in the file at ``path``.

    Raises :class:`OSError` when the file cannot be read, and :class:`yaml.YAMLError`
    when it is not UTF-8 or not valid YAML (or holds a key twice).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise yaml.YAMLError(f"not UTF-8 text (byte {data[exc.start]:#04x} on line {line})") from None
    return safe_load(text)
