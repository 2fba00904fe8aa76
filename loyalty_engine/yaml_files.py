"""Reading the YAML files people write: config.yaml, rule files, rule tests, snoozes.yaml.

Whatever such a file holds, reading it ends in data or in one line naming the file (and the
line and column where there is one), never in a traceback, a hang or an object of any kind:

- Only plain data: PyYAML's safe constructors. A `!!python/object` tag is an error.
- At most MAX_BYTES, checked while reading: a huge file (or /dev/zero) is never read whole.
- At most MAX_DEPTH levels of nesting, checked while the node tree is composed. PyYAML's
  composer recurses once per level, so `[[[[…` about 900 deep raises RecursionError, and
  deeper still could exhaust the C stack; counting levels stops it at level 51.
- At most MAX_VALUES values once aliases are expanded. An alias (`*a`) repeats a node without
  copying it, so ten lines of `&a`/`*a` stand for a billion values ("billion laughs") that
  anything walking the data (pydantic, str()) would expand.
- A value that its tag cannot build (`2026-02-30`, which YAML reads as a date) is an error
  at its place, not a ValueError from deep inside PyYAML.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from loyalty_engine.errors import UserError, not_valid_yaml

MAX_BYTES = 1_000_000  # 1 MB: the largest shipped rule file has 4 KB
MAX_DEPTH = 50  # the deepest file we write needs 6 levels
MAX_VALUES = 1_000_000  # more than a 1 MB file can hold without aliases


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML, but over a limit or not plain data: `problem` says which, at `problem_mark`."""


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader with the limits above."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values: dict[int, int] = {}  # id(node) -> values in it, aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._values:  # `&a [*a]`: data that contains itself
                raise _Refused(None, None, "an alias refers to a list or mapping that contains it", event.start_mark)
            return node
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1
        values = 1
        if isinstance(node, yaml.SequenceNode):
            values += sum(self._values[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            values += sum(self._values[id(key)] + self._values[id(value)] for key, value in node.value)
        if values > MAX_VALUES:
            raise _Refused(None, None, f"stands for more than {MAX_VALUES:,} values once its aliases (*name) are expanded", node.start_mark)
        self._values[id(node)] = values
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as err:  # e.g. `2026-02-30` or `!!int abc`
            value = repr(node.value[:40]) if isinstance(node, yaml.ScalarNode) else "the value"
            raise _Refused(None, None, f"{value} cannot be read as {_tag(node.tag)} ({err})", node.start_mark) from None

    def construct_undefined(self, node):
        raise _Refused(None, None, f"the tag {_tag(node.tag)} is not allowed: only plain text, numbers, dates, lists and mappings", node.start_mark)


SafeLoader.add_constructor(None, SafeLoader.construct_undefined)


def load_yaml(path: Path, error: type[UserError], loader: type[SafeLoader] = SafeLoader, what: str = "file") -> tuple[yaml.Node | None, object]:
    """The file's node tree (for line numbers) and its data; any problem raises `error` with
    one line. `what` names the file in a read error ('config file')."""
    text = _read_text(path, error, what)
    reader = None
    try:
        reader = loader(text)
        node = reader.get_single_node()
        return node, (reader.construct_document(node) if node is not None else None)
    except _Refused as err:
        raise error(f"{_place(path, err.problem_mark)}: {err.problem}") from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow, e.g. a raw NUL
        # Its message spans lines and has no mark; the position gives the line and column.
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        raise error(f"{path}:{line}:{column}: not valid YAML (character #x{err.character:04x} is not allowed)") from None
    except yaml.YAMLError as err:
        raise error(not_valid_yaml(path, err)) from None
    finally:
        if reader is not None:
            reader.dispose()


def _read_text(path: Path, error: type[UserError], what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # one byte more tells a file over the limit
    except OSError as err:
        raise error(f"{path}: cannot read {what} ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise error(f"{path}: {what} is larger than 1 MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: cannot read {what} (not UTF-8 text: byte {err.start + 1} is {data[err.start]:#04x})") from None


def _place(path: Path, mark) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)


def _tag(tag: str) -> str:
    """'tag:yaml.org,2002:python/object' as written in the file ('!!python/object'); in words for
    the types YAML gives plain values (`2026-02-30` is read as a date)."""
    tag = tag.replace("tag:yaml.org,2002:", "!!")
    return {"!!timestamp": "a date", "!!int": "a whole number", "!!float": "a number"}.get(tag, tag)
