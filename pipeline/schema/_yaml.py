"""Read a schema file as plain YAML data, refusing what a schema never needs.

``yaml.safe_load`` already refuses Python object tags. On top of it this
loader refuses aliases (``*name``): a schema never needs them, and they are
how a few hundred bytes expand into gigabytes ("billion laughs"). It also
refuses a key written twice in one mapping, which ``safe_load`` would settle
silently by keeping the last value. It remembers the line of every key so that
errors can point at it.
"""

from __future__ import annotations

from typing import Any

import yaml

#: a path into the document: mapping keys and list positions
KeyPath = tuple[Any, ...]


class YamlRefused(ValueError):
    """The text is not YAML batchguard will read; the message says why and where."""


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                "allowed in schema files (they can expand without bound); write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlRefused(
                    f"line {line}: key '{key}' appears twice in one mapping (first on line "
                    f"{seen[key]}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return the data and the 1-based line of every mapping key.

    Raises
    ------
    YamlRefused
        Invalid YAML, an alias, a duplicate key, or a tag that is not plain data.
    """
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise YamlRefused(
            f"{where}{exc.problem}; schema files hold plain data only (no Python tags)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlRefused(f"{where}not valid YAML ({problem})") from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    _key_lines(node, (), lines)
    return data, lines


def _key_lines(node: Any, path: KeyPath, out: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            out[(*path, key)] = key_node.start_mark.line + 1
            _key_lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.setdefault((*path, i), item.start_mark.line + 1)
            _key_lines(item, (*path, i), out)
