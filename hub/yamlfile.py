"""Reading a YAML configuration file that may be hostile or broken.

Site files, edge configs and scenarios are written by people and copied around;
whatever is wrong with one (not UTF-8, nested thousands deep, huge, aliased into
billions of nodes) must come back as one line naming the file, which the commands
print with exit code 2, never as a traceback from deep inside the parser or a hang.
"""

from __future__ import annotations

from pathlib import Path

import yaml

# The demo site is 14 kB; a district's files are far below this.
MAX_YAML_BYTES = 8 * 1024 * 1024
# The deepest legitimate structure is the grid tree (six levels, two nodes each);
# anything this deep is a mistake or an attack, and validating it would recurse.
MAX_YAML_DEPTH = 64
# Nodes (mappings, sequences, keys and values) once every alias is followed. PyYAML
# shares an aliased node instead of copying it, so a few kilobytes of anchors and
# aliases ("billion laughs") load cheaply as a graph, but every validator walks them
# as a tree: 4 kB of aliased grid units were 200**4 units to check. An 8 MiB file
# without aliases holds well under this; the demo site has about 1,700.
MAX_YAML_NODES = 2_000_000


def load_yaml_file(path: Path, what: str, error: type[ValueError]) -> object:
    """The parsed YAML document in ``path``. Raises ``error`` with a one-line message
    naming ``what`` (e.g. "site file") and the path when the file cannot be read, is
    larger than MAX_YAML_BYTES, is not UTF-8, is not YAML or nests deeper than
    MAX_YAML_DEPTH."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_YAML_BYTES:
        raise error(f"{what} {path} is larger than {MAX_YAML_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset"
                    f" {e.start}); save it as UTF-8") from None
    try:
        # The scanner is iterative, the composer recursive: measure the nesting on
        # the tokens first, so a deep file is refused before it can recurse.
        if _token_depth(text) > MAX_YAML_DEPTH:
            raise error(f"{what} {path} nests deeper than {MAX_YAML_DEPTH} levels")
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {_one_line(e)}") from None
    except RecursionError:
        raise error(f"{what} {path} nests deeper than {MAX_YAML_DEPTH} levels") from None
    if _depth(raw) > MAX_YAML_DEPTH:
        raise error(f"{what} {path} nests deeper than {MAX_YAML_DEPTH} levels")
    if _expanded_size(raw, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise error(f"{what} {path} expands to more than {MAX_YAML_NODES} nodes through its"
                    " aliases (*name); write the repeated parts out or use fewer aliases")
    return raw


_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _token_depth(text: str) -> int:
    depth = deepest = 0
    for tok in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(tok, _OPEN):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_YAML_DEPTH:
                    break
        elif isinstance(tok, _CLOSE):
            depth -= 1
    return deepest


def _one_line(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(e).split())


def _depth(root: object) -> int:
    """Nesting depth of parsed YAML, without recursion. Aliases make the document a
    graph (a cyclic one with a recursive alias): a node is walked again only when it
    is reached deeper than before, so the walk ends after at most MAX_YAML_DEPTH
    visits of each node, and a cycle counts as too deep."""
    deepest = 0
    best: dict[int, int] = {}
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        obj, d = stack.pop()
        if not isinstance(obj, dict | list):
            continue
        d += 1
        if d > MAX_YAML_DEPTH:
            return d
        if best.get(id(obj), 0) >= d:
            continue
        best[id(obj)] = d
        deepest = max(deepest, d)
        children = obj.values() if isinstance(obj, dict) else obj
        stack.extend((c, d) for c in children)
    return deepest


def _expanded_size(root: object, limit: int) -> int:
    """Nodes in the document with every alias followed (a node reached twice counts
    twice), counted without expanding anything: each mapping or sequence is sized
    once from its children's sizes. Call after :func:`_depth`, which refuses cycles.
    Returns early with a count over ``limit`` once one is reached."""
    if not isinstance(root, dict | list):
        return 1
    size: dict[int, int] = {}
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        obj, children_done = stack.pop()
        if id(obj) in size:
            continue
        assert isinstance(obj, dict | list)
        children = list(obj.values()) if isinstance(obj, dict) else obj
        if not children_done:
            stack.append((obj, True))
            stack.extend((c, False) for c in children
                         if isinstance(c, dict | list) and id(c) not in size)
            continue
        # A mapping's keys are nodes too (scalars: a key cannot be a container here).
        total = 1 + (len(obj) if isinstance(obj, dict) else 0) + sum(
            size[id(c)] if isinstance(c, dict | list) else 1 for c in children)
        if total > limit:
            return total
        size[id(obj)] = total
    return size[id(root)]
