"""The statistics as tables for a spreadsheet: totals, per category, per child grid
unit and the daily trend, each a titled block of rows, written as one CSV (blocks
separated by a blank line) or one Excel workbook (a sheet per block, by openpyxl).
Pure: the figures come in as ``hub.store.stats`` returns them."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Column: (key in the figures, heading). Headings in both languages: the file goes to
# people who read either.
_FIGURES = [
    ("total", "总数 / total"), ("open", "未结 / open"), ("closed", "办结 / closed"),
    ("cancelled", "误报作废 / cancelled"), ("handled_in_grid", "网格内办结 / handled in grid"),
    ("escalated", "升级上报 / escalated"),
    ("median_accept_s", "受理用时中位数(秒) / median accept s"),
    ("median_close_s", "办结用时中位数(秒) / median close s"),
    ("false_share", "误报率 / false share"),
]


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]


def stats_tables(stats: dict[str, Any], trend: list[dict[str, Any]],
                 unit_names: dict[str, str]) -> list[Table]:
    heads = [h for _, h in _FIGURES]

    def figs(f: dict[str, Any]) -> list[Any]:
        return [f[k] for k, _ in _FIGURES]

    period = [["范围 / scope", stats["scope"] or "site"],
              ["起 / since", stats["since"].isoformat()],
              ["止 / until", stats["until"].isoformat()]]
    cats = sorted({c for p in trend for c in p["counts"]})
    return [
        Table("统计周期 / period", ["", ""], period),
        Table("合计 / totals", heads, [figs(stats["totals"])]),
        Table("按类别 / by category", ["类别 / category", *heads],
              [[c, *figs(f)] for c, f in sorted(stats["by_category"].items())]),
        Table("按网格 / by grid unit", ["网格编码 / code", "名称 / name", *heads],
              [[c, unit_names.get(c, ""), *figs(f)] for c, f in sorted(stats["by_unit"].items())]),
        Table("每日趋势 / per day", ["日期 / day", *cats, "总数 / total"],
              [[p["start"].isoformat(), *[p["counts"].get(c, 0) for c in cats],
                sum(p["counts"].values())] for p in trend]),
    ]


def to_csv(tables: list[Table]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    for i, t in enumerate(tables):
        if i:
            w.writerow([])
        w.writerow([t.title])
        w.writerow(t.header)
        w.writerows(t.rows)
    # A byte-order mark: Excel opens a UTF-8 CSV without one as the local code page.
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(tables: list[Table]) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)
    for t in tables:
        # A sheet title may not hold / and is at most 31 characters.
        ws = wb.create_sheet(t.title.split(" / ")[-1][:31])
        ws.append([t.title])
        ws.append(t.header)
        for r in t.rows:
            ws.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
