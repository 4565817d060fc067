#!/usr/bin/env python3
"""Draw Herald's Grafana dashboard from live Prometheus data, without Grafana.

Reads charts/herald/dashboards/herald.json, runs every panel's PromQL targets through
Prometheus' HTTP API (/api/v1/query_range) and draws the panels in the dashboard's own
24-column gridPos layout in a dark, Grafana-like style.

It is also a check: it exits non-zero, naming the panel, when a query fails or returns
no series (or nothing but NaN), because then the dashboard asks for metrics or labels
that Herald does not export. Nothing is written in that case (unless --keep-going).

    python3 docs/dashboard/render.py --prometheus http://127.0.0.1:9090 --range 15m

Needs matplotlib (pip install matplotlib). See docs/dashboard/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARD = ROOT / "charts/herald/dashboards/herald.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "herald-dashboard.png"

# Grafana's dark theme and classic palette.
CANVAS = "#111217"
PANEL = "#181b1f"
BORDER = "#2a2d33"
TEXT = "#ccccdc"
TEXT_DIM = "#8e8e9a"
GRID = "#24272d"
PALETTE = [
    "#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
    "#705DA0", "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C",
    "#6D1F62", "#584477", "#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191",
    "#82B5D8", "#E5A8E2", "#AEA2E0",
]
THRESHOLD_COLORS = {"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A",
                     "orange": "#FF9830", "blue": "#5794F2", "purple": "#B877D9",
                     "text": TEXT}
DEFAULT_THRESHOLDS = [{"color": "green", "value": None}, {"color": "red", "value": 80}]

# Grafana's grid: 24 columns, 30 px rows with 8 px gaps.
CELL_H, GAP = 30, 8


class PanelError(Exception):
    pass


# ---------------------------------------------------------------- time and variables

def parse_duration(text: str) -> float:
    """'15m', '1h30m', '90s', '2d' -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def fmt_duration(seconds: float) -> str:
    """Seconds -> a PromQL duration ('1m30s' style, whole seconds, at least 1s)."""
    seconds = max(1, int(round(seconds)))
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def parse_time(text: str) -> float:
    if text == "now":
        return dt.datetime.now(dt.timezone.utc).timestamp()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


class Variables:
    """Grafana's template variables, resolved the way Grafana would for one render."""

    def __init__(self, dashboard: dict, overrides: dict[str, str], start: float, end: float,
                 step: float, scrape: float):
        rng = end - start
        rate_interval = max(step + scrape, 4 * scrape)
        self.values: dict[str, str] = {
            "__interval": fmt_duration(step),
            "__interval_ms": str(int(step * 1000)),
            "__rate_interval": fmt_duration(rate_interval),
            "__range": fmt_duration(rng),
            "__range_s": str(int(rng)),
            "__range_ms": str(int(rng * 1000)),
        }
        for var in dashboard.get("templating", {}).get("list", []):
            name, kind = var.get("name"), var.get("type")
            if kind == "datasource":
                self.values[name] = "prometheus"
                continue
            current = (var.get("current") or {}).get("value")
            if isinstance(current, list):
                current = "|".join(current)
            if current in (None, "", "$__all") or current == ["$__all"]:
                # Unselected or "All": match everything, as Grafana's "All" with
                # a custom allValue of .* does for regex matchers.
                current = var.get("allValue") or ".*"
            self.values[name] = str(current)
        self.values.update(overrides)

    def substitute(self, expr: str, where: str) -> str:
        def repl(match: re.Match) -> str:
            name = match.group(1) or match.group(2) or match.group(3)
            if name not in self.values:
                raise PanelError(f"{where}: unknown variable ${name} (pass --var {name}=...)")
            return self.values[name]

        return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


# ---------------------------------------------------------------- Prometheus

def scrape_interval(prom: str) -> float:
    """The global scrape_interval from the server's config (Grafana's default: 15s)."""
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/status/config", timeout=10) as r:
            yaml = json.load(r)["data"]["yaml"]
        m = re.search(r"^global:\n(?:  .*\n)*?  scrape_interval: (\S+)", yaml, re.M)
        return parse_duration(m.group(1)) if m else 15.0
    except Exception:  # noqa: BLE001 - fall back to Grafana's default
        return 15.0


def query_range(prom: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/query_range?{params}", timeout=60) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except Exception:  # noqa: BLE001
            raise PanelError(f"HTTP {e.code} from Prometheus") from None
    except urllib.error.URLError as e:
        sys.exit(f"render.py: cannot reach Prometheus at {prom}: {e.reason}")
    if body.get("status") != "success":
        raise PanelError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    return body["data"]["result"]


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a rough parse, good for diagnostics)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # strings
    e = re.sub(r"\{[^}]*\}", "", e)                                  # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)                                  # ranges
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][\w:]*", e):
        after = e[m.end():].lstrip()
        if after.startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue                                                  # a function
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue                                                  # 1e3, 0.5
        names.add(m.group())
    return names


_known: set[str] | None = None


def diagnose(prom: str, expr: str) -> str:
    """Why a query might return nothing: a metric Prometheus has never seen, or else labels."""
    global _known
    if _known is None:
        try:
            with urllib.request.urlopen(f"{prom}/api/v1/label/__name__/values", timeout=30) as r:
                _known = set(json.load(r)["data"])
        except Exception:  # noqa: BLE001
            _known = set()
    missing = sorted(n for n in metric_names(expr) if _known and n not in _known)
    if missing:
        return ("Prometheus has no metric " + ", ".join(missing) +
                " (misspelt, not exported by Herald, or not scraped)")
    return ("the metrics exist, so a label matcher or grouping matches nothing, or nothing "
            "happened in the window that would create the series")


# ---------------------------------------------------------------- units

SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]


def _num(v: float, decimals: int | None = None) -> str:
    if decimals is not None:
        return f"{v:.{decimals}f}"
    if v == 0:
        return "0"
    # Three significant digits, no exponent, no trailing zeros: 4.5, 18, 0.032, 123.
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_short(v: float, decimals: int | None = None) -> str:
    for size, suffix in SI:
        if abs(v) >= size:
            return _num(v / size, decimals) + " " + suffix
    return _num(v, decimals)


def fmt_seconds(v: float, decimals: int | None = None) -> str:
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return _num(v * 1e6, decimals) + " µs"
    if a < 1:
        return _num(v * 1e3, decimals) + " ms"
    if a < 60:
        return _num(v, decimals) + " s"
    if a < 3600:
        return _num(v / 60, decimals) + " min"
    return _num(v / 3600, decimals) + " hour"


def fmt_bytes(v: float, decimals: int | None = None) -> str:
    for size, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(v) >= size:
            return _num(v / size, decimals) + " " + suffix
    return _num(v, decimals) + " B"


def formatter(unit: str | None):
    unit = unit or "short"
    if unit == "s":
        return fmt_seconds
    if unit == "ms":
        return lambda v, d=None: fmt_seconds(v / 1000, d)
    if unit in ("bytes", "decbytes"):
        return fmt_bytes
    if unit == "percentunit":
        return lambda v, d=None: _num(v * 100, d) + "%"
    if unit == "percent":
        return lambda v, d=None: _num(v, d) + "%"
    suffix = {"ops": " ops/s", "reqps": " req/s", "rps": " rd/s", "wps": " wr/s",
              "cps": " c/s", "none": "", "short": ""}.get(unit, "")
    return lambda v, d=None: fmt_short(v, d) + suffix


# ---------------------------------------------------------------- data

def legend_name(fmt: str | None, metric: dict, expr: str) -> str:
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt).strip()
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    name = metric.get("__name__", "")
    if not labels:
        return name or expr
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def panel_series(panel: dict, prom: str, variables: Variables, start: float, end: float,
                 step: float) -> list[tuple[str, list[float], list[float]]]:
    """[(legend, times, values)] for all visible targets; PanelError if any is empty."""
    out = []
    for target in panel.get("targets", []):
        if target.get("hide"):
            continue
        ref = target.get("refId", "?")
        where = f"target {ref}"
        expr = variables.substitute(target.get("expr", ""), where)
        if not expr.strip():
            raise PanelError(f"{where}: empty expression")
        try:
            result = query_range(prom, expr, start, end, step)
        except PanelError as e:
            raise PanelError(f"{where} `{expr}`: {e}") from None
        if not result:
            raise PanelError(f"{where} `{expr}`: no series; {diagnose(prom, expr)}")
        finite = 0
        for series in result:
            times = [float(t) for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            finite += sum(1 for v in values if math.isfinite(v))
            out.append((legend_name(target.get("legendFormat"), series["metric"], expr),
                        times, values))
        if not finite:
            raise PanelError(f"{where} `{expr}`: {len(result)} series but only NaN values")
    return sorted(out, key=lambda s: s[0]) if len(out) > 1 else out


# ---------------------------------------------------------------- drawing

class Layout:
    def __init__(self, panels: list[dict], width_px: int, header_px: int):
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        self.width = width_px
        self.pad = 16
        self.header = header_px
        self.col = (width_px - 2 * self.pad + GAP) / 24
        self.height = header_px + rows * (CELL_H + GAP) - GAP + self.pad

    def rect(self, pos: dict) -> tuple[float, float, float, float]:
        """gridPos -> (left, bottom, width, height) in figure fractions."""
        x = self.pad + pos["x"] * self.col
        w = pos["w"] * self.col - GAP
        y = self.header + pos["y"] * (CELL_H + GAP)
        h = pos["h"] * (CELL_H + GAP) - GAP
        return (x / self.width, 1 - (y + h) / self.height, w / self.width, h / self.height)


def px(layout: Layout, n: float, axis: str) -> float:
    return n / (layout.width if axis == "x" else layout.height)


def draw_frame(fig, layout: Layout, panel: dict):
    left, bottom, w, h = layout.rect(panel["gridPos"])
    fig.patches.append(FancyBboxPatch(
        (left, bottom), w, h, boxstyle="round,pad=0,rounding_size=0.002",
        transform=fig.transFigure, facecolor=PANEL, edgecolor=BORDER, linewidth=1, zorder=-10))
    fig.text(left + px(layout, 10, "x"), bottom + h - px(layout, 9, "y"), panel.get("title", ""),
             color=TEXT, fontsize=10.5, fontweight="bold", va="top", ha="left")
    return left, bottom, w, h


def threshold_color(value: float, fc: dict) -> str:
    steps = (fc.get("thresholds") or {}).get("steps") or DEFAULT_THRESHOLDS
    color = steps[0]["color"]
    for s in steps:
        if s.get("value") is None or (math.isfinite(value) and value >= s["value"]):
            color = s["color"]
    return THRESHOLD_COLORS.get(color, color)


def last_not_null(values: list[float]) -> float:
    for v in reversed(values):
        if math.isfinite(v):
            return v
    return float("nan")


def draw_stat(fig, layout: Layout, panel: dict, series):
    left, bottom, w, h = draw_frame(fig, layout, panel)
    fc = panel.get("fieldConfig", {}).get("defaults", {})
    fmt = formatter(fc.get("unit"))
    n = len(series)
    top_pad, side = px(layout, 30, "y"), px(layout, 6, "x")
    for i, (name, times, values) in enumerate(series):
        cw = (w - 2 * side) / n
        cl = left + side + i * cw
        value = last_not_null(values)
        color = threshold_color(value, fc)
        area = fig.add_axes((cl, bottom + px(layout, 4, "y"), cw, h - top_pad - px(layout, 4, "y")))
        area.set_facecolor("none")
        area.axis("off")
        if panel.get("options", {}).get("graphMode", "area") != "none":
            xs = times
            ys = [v if math.isfinite(v) else 0 for v in values]
            area.fill_between(xs, ys, color=color, alpha=0.18, linewidth=0)
            area.plot(xs, ys, color=color, alpha=0.75, linewidth=1.2)
            top = max(ys) if ys and max(ys) > 0 else 1
            area.set_ylim(0, top * 2.6)
            area.set_xlim(xs[0], xs[-1])
        text = fmt(value) if math.isfinite(value) else "No data"
        label = name if n > 1 else None
        area.text(0.5, 0.58 if label else 0.52, text, transform=area.transAxes, ha="center",
                  va="center", color=color, fontsize=24, fontweight="bold")
        if label:
            area.text(0.5, 0.2, label, transform=area.transAxes, ha="center", color=TEXT_DIM,
                      fontsize=8)


def draw_timeseries(fig, layout: Layout, panel: dict, series, start: float, end: float, tz):
    left, bottom, w, h = draw_frame(fig, layout, panel)
    fc = panel.get("fieldConfig", {}).get("defaults", {})
    fmt = formatter(fc.get("unit"))
    custom = fc.get("custom", {})
    names = [s[0] for s in series]
    # Legend below the plot, Grafana's "list" mode: as many columns as fit.
    longest = max(len(n) for n in names)
    ncol = max(1, min(len(names), int((w * layout.width - 20) // (longest * 6.2 + 34))))
    legend_rows = math.ceil(len(names) / ncol)
    legend_h = px(layout, 8 + 15 * legend_rows, "y")
    ax_left = left + px(layout, 66, "x")
    ax_bottom = bottom + legend_h + px(layout, 20, "y")
    ax = fig.add_axes((ax_left, ax_bottom, left + w - px(layout, 14, "x") - ax_left,
                       bottom + h - px(layout, 34, "y") - ax_bottom))
    ax.set_facecolor(PANEL)
    lines = []
    lo = math.inf
    for i, (name, times, values) in enumerate(series):
        xs = [dt.datetime.fromtimestamp(t, tz) for t in times]
        ys = [v if math.isfinite(v) else float("nan") for v in values]
        lo = min([lo] + [v for v in ys if math.isfinite(v)])
        color = PALETTE[i % len(PALETTE)]
        (line,) = ax.plot(xs, ys, color=color, linewidth=custom.get("lineWidth", 1) * 1.3)
        fill = custom.get("fillOpacity", 10)
        if fill:
            ax.fill_between(xs, ys, color=color, alpha=fill / 100 * 0.9, linewidth=0)
        lines.append(line)
    ax.set_xlim(dt.datetime.fromtimestamp(start, tz), dt.datetime.fromtimestamp(end, tz))
    if lo >= 0:
        ax.set_ylim(bottom=0)
        top = ax.get_ylim()[1]
        if top <= 0:
            ax.set_ylim(0, 1)
    integral = all(v == int(v) for _, _, vs in series for v in vs if math.isfinite(v))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3, integer=integral))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8, tz=tz))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=TEXT_DIM, labelsize=8, length=0, pad=4)
    leg = fig.legend(lines, names, loc="upper left", ncol=ncol, frameon=False, fontsize=8,
                     bbox_to_anchor=(left + px(layout, 6, "x"), bottom + legend_h),
                     bbox_transform=fig.transFigure, handlelength=1.2, handleheight=0.3,
                     columnspacing=1.6, borderaxespad=0, borderpad=0.2, labelspacing=0.35)
    for text in leg.get_texts():
        text.set_color(TEXT)
    for handle in leg.legend_handles if hasattr(leg, "legend_handles") else leg.legendHandles:
        handle.set_linewidth(4)


def draw_row(fig, layout: Layout, panel: dict):
    left, bottom, w, h = layout.rect(panel["gridPos"])
    fig.text(left, bottom + h / 2, panel.get("title", ""), color=TEXT, fontsize=12,
             fontweight="bold", va="center")


def draw_text(fig, layout: Layout, panel: dict):
    left, bottom, w, h = draw_frame(fig, layout, panel)
    content = panel.get("options", {}).get("content", "")
    fig.text(left + px(layout, 10, "x"), bottom + h - px(layout, 34, "y"), content, color=TEXT,
             fontsize=9, va="top", wrap=True)


# ---------------------------------------------------------------- main

def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        if p.get("type") == "row":
            out.extend(p.get("panels", []))  # collapsed rows hold their panels
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    ap.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_URL",
                                                           "http://127.0.0.1:9090"))
    ap.add_argument("--end", default="now", help="now, unix seconds or ISO-8601 (default now)")
    ap.add_argument("--start", help="unix seconds or ISO-8601 (default: end - range)")
    ap.add_argument("--range", default="15m", help="window when --start is not given (15m)")
    ap.add_argument("--step", help="query resolution (default: window / 300, at least the "
                                   "scrape interval)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value for a dashboard variable (repeatable)")
    ap.add_argument("--tz", default="UTC", help="time zone of the time axis (UTC)")
    ap.add_argument("--width", type=int, default=1600, help="image width in pixels (1600)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--keep-going", action="store_true",
                    help="draw the image even when panels fail (still exits 1)")
    args = ap.parse_args()

    prom = args.prometheus.rstrip("/")
    dashboard = json.loads(args.dashboard.read_text())
    end = parse_time(args.end)
    start = parse_time(args.start) if args.start else end - parse_duration(args.range)
    if start >= end:
        sys.exit("render.py: start must be before end")
    scrape = scrape_interval(prom)
    step = parse_duration(args.step) if args.step else max(scrape, round((end - start) / 300))
    overrides = dict(v.split("=", 1) for v in args.var)
    variables = Variables(dashboard, overrides, start, end, step, scrape)
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(args.tz)

    panels = [p for p in all_panels(dashboard) if "gridPos" in p]
    data, failures = {}, []
    for i, panel in enumerate(panels):
        kind = panel.get("type")
        title = panel.get("title", f"panel #{i}")
        if kind in ("row", "text"):
            continue
        if kind not in ("stat", "gauge", "timeseries", "graph"):
            failures.append(f'panel "{title}": type {kind!r} is not supported by render.py')
            continue
        try:
            data[i] = panel_series(panel, prom, variables, start, end, step)
            n = len(data[i])
            print(f'ok    {title}: {n} series', file=sys.stderr)
        except PanelError as e:
            failures.append(f'panel "{title}": {e}')
            print(f'FAIL  {title}: {e}', file=sys.stderr)

    if failures and not args.keep_going:
        print(f"\nrender.py: {len(failures)} panel(s) failed; no image written:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1

    header_px = 58
    layout = Layout(panels, args.width, header_px)
    dpi = 100
    plt.rcParams.update({"font.family": "DejaVu Sans", "text.color": TEXT})
    fig = plt.figure(figsize=(layout.width / dpi, layout.height / dpi), dpi=dpi, facecolor=CANVAS)
    t0 = dt.datetime.fromtimestamp(start, tz)
    t1 = dt.datetime.fromtimestamp(end, tz)
    fig.text(px(layout, layout.pad, "x"), 1 - px(layout, 16, "y"), dashboard.get("title", ""),
             fontsize=16, fontweight="bold", color=TEXT, va="top")
    window = f"{t0:%Y-%m-%d %H:%M} – {t1:%H:%M} {args.tz}"
    fig.text(1 - px(layout, layout.pad, "x"), 1 - px(layout, 16, "y"), window,
             fontsize=10, color=TEXT_DIM, va="top", ha="right")
    fig.text(px(layout, layout.pad, "x"), 1 - px(layout, 40, "y"),
             "drawn by docs/dashboard/render.py from Prometheus query_range data "
             f"(step {fmt_duration(step)}) — not a Grafana screenshot",
             fontsize=8.5, color=TEXT_DIM, va="top", style="italic")
    for i, panel in enumerate(panels):
        kind = panel.get("type")
        if kind == "row":
            draw_row(fig, layout, panel)
        elif kind == "text":
            draw_text(fig, layout, panel)
        elif i in data:
            if kind in ("stat", "gauge"):
                draw_stat(fig, layout, panel, data[i])
            else:
                draw_timeseries(fig, layout, panel, data[i], start, end, tz)
        else:
            draw_frame(fig, layout, panel)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=CANVAS)
    plt.close(fig)
    png = shrink(buf.getvalue())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({layout.width}x{int(layout.height)} px, {len(png) // 1024} KiB)",
          file=sys.stderr)
    return 1 if failures else 0


def shrink(png: bytes) -> bytes:
    """Quantize to a 256-colour palette: a fraction of the size, no visible change."""
    try:
        from PIL import Image
    except ImportError:
        return png
    img = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


if __name__ == "__main__":
    sys.exit(main())
