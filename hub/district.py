"""A district deployment: a directory of site files, one per compound, under one
district grid tree.

Every file is a whole site file (``hub.config.Site``) with its own site id, topics,
devices and cameras. Together they must form one tree: every file's grid starts at
the same district code with the same name, a street code shared by several files
carries one name, and everything below the street level (communities, grids,
micro-grids) belongs to one file only. Site ids, device ids and grid codes below the
street that two files both claim are refused at load, with a message naming both
files. Files are read in name order, so the same directory always loads the same
way; names starting with a dot are skipped (an editor's temporary files).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.config import ConfigError, GridNode, Site, load_site
from hub.domain import GridLevel

SUFFIXES = (".yaml", ".yml")
# A directory of more files than this is not a district's compounds but a mistake.
MAX_SITES = 2000


@dataclass(frozen=True, slots=True)
class Community:
    code: str
    name: str
    site_id: str
    site_name: str


@dataclass(frozen=True)
class District:
    """The compounds of one deployment by site id, each with the file it came from."""

    sites: dict[str, Site]
    files: dict[str, Path]
    grid: GridNode  # the district tree: every file's grid, merged
    _device_site: dict[str, str] = field(repr=False)
    _grid_site: dict[str, str] = field(repr=False)

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def __len__(self) -> int:
        return len(self.sites)

    def site(self, site_id: str) -> Site | None:
        return self.sites.get(site_id)

    def site_of_device(self, device_id: str) -> Site | None:
        sid = self._device_site.get(device_id)
        return self.sites[sid] if sid is not None else None

    def site_of_grid(self, code: str) -> Site | None:
        """The compound a grid code below the street level belongs to."""
        for n in range(len(code), GridLevel.STREET, -1):
            sid = self._grid_site.get(code[:n])
            if sid is not None:
                return self.sites[sid]
        return None

    def communities(self, scope: str = "") -> list[Community]:
        """The communities inside ``scope`` (a grid code prefix; empty: all), or the
        one holding ``scope`` when it lies below a community, in code order."""
        out = []
        for site in self.sites.values():
            for node, _ in site.grid.walk():
                if len(node.code) != GridLevel.COMMUNITY:
                    continue
                if node.code.startswith(scope) or scope.startswith(node.code):
                    out.append(Community(node.code, node.name, site.site.id, site.site.name))
        return sorted(out, key=lambda c: c.code)


def site_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir()
                   if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        raise ConfigError(f"site directory {path} holds no site file (*.yaml, *.yml)")
    if len(files) > MAX_SITES:
        raise ConfigError(f"site directory {path} holds {len(files)} site files; at most"
                          f" {MAX_SITES}")
    return files


def load_district(path: str | Path) -> District:
    """Every site file of the directory ``path``, checked to form one district (a
    file instead of a directory is a district of one compound)."""
    path = Path(path)
    files = site_files(path) if path.is_dir() else [path]
    return district_of([(f, load_site(f)) for f in files])


def district_of(loaded: list[tuple[Path, Site]]) -> District:
    if not loaded:
        raise ConfigError("a district needs at least one site file")
    sites: dict[str, Site] = {}
    files: dict[str, Path] = {}
    device_site: dict[str, str] = {}
    grid_site: dict[str, str] = {}
    # Codes at or above the street level: shared, one name each (code -> name, file).
    upper: dict[str, tuple[str, Path]] = {}
    root_code = loaded[0][1].grid.code
    for f, site in loaded:
        sid = site.site.id
        if sid in sites:
            raise ConfigError(f"site id {sid!r} is in both {files[sid]} and {f}")
        if site.grid.code != root_code or GridLevel.of_code(root_code) != GridLevel.DISTRICT:
            raise ConfigError(
                f"{f}: the grid must start at the district {root_code} as"
                f" {loaded[0][0]}'s does (a 6-digit code); it starts at {site.grid.code}")
        for node, _ in site.grid.walk():
            if len(node.code) <= GridLevel.STREET:
                seen = upper.get(node.code)
                if seen is not None and seen[0] != node.name:
                    raise ConfigError(
                        f"grid {node.code} is named {seen[0]!r} in {seen[1]} but"
                        f" {node.name!r} in {f}")
                upper.setdefault(node.code, (node.name, f))
                continue
            other = grid_site.get(node.code)
            if other is not None:
                raise ConfigError(f"grid code {node.code} is in both {files[other]} and {f}")
            grid_site[node.code] = sid
        for d in site.devices:
            other = device_site.get(d.id)
            if other is not None:
                raise ConfigError(f"device id {d.id!r} is in both {files[other]} and {f}")
            device_site[d.id] = sid
        sites[sid] = site
        files[sid] = f
    return District(sites=sites, files=files, grid=_merge([s.grid for _, s in loaded]),
                    _device_site=device_site, _grid_site=grid_site)


def _merge(trees: list[GridNode]) -> GridNode:
    """One tree of several with the same root: children with the same code merged."""
    children: dict[str, list[GridNode]] = {}
    for t in trees:
        for c in t.children:
            children.setdefault(c.code, []).append(c)
    merged = [_merge(group) if len(group) > 1 else group[0]
              for _, group in sorted(children.items())]
    return GridNode(code=trees[0].code, name=trees[0].name, children=merged)
