"""GetMetricWidgetImage: a metric widget definition rendered as a PNG with matplotlib (Agg).

The definition is the JSON CloudWatch documents for metric widgets: `metrics` rows
`[Namespace, MetricName, DimName, DimValue, ..., {options}]` (`"."` repeats the previous row's value at
that position; options `stat`, `period`, `label`, `color`, `visible`), `view` (`timeSeries` or
`singleValue`), `stat`, `period`, `start` / `end` (ISO 8601 or relative like `-PT3H`), `title`, `width` /
`height` in pixels (600 x 400 by default), `annotations.horizontal` ([{value, label, color}]), `yAxis.left`
(min / max). Metric math rows (`expression`) and other views are refused with a clear error.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from localcloud.cloudwatch import evaluation as ev

_DURATION = re.compile(r"^-P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
DEFAULT_PERIOD, DEFAULT_STAT = 300, "Average"
VIEWS = ("timeSeries", "singleValue")


class WidgetError(ValueError):
    """The widget definition is invalid, or asks for what the local cloud does not render."""


def moment(text: Any, now: datetime) -> datetime:
    """An absolute ISO 8601 time or a negative ISO 8601 duration before `now`."""
    value = str(text)
    match = _DURATION.match(value)
    if match and any(match.groups()):
        weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return now - timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        return ev.utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise WidgetError(f"start/end {value!r} is neither ISO 8601 nor a relative duration like -PT3H") from None


def rows(definition: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]], dict[str, Any]]]:
    """(namespace, metric name, dimensions, options) per metrics row, with "." shorthand resolved."""
    out = []
    previous: list[Any] = []
    for row in definition.get("metrics") or []:
        if not isinstance(row, list) or not row:
            raise WidgetError("each entry of metrics must be a non-empty array")
        options = row[-1] if isinstance(row[-1], dict) else {}
        parts = [p for p in row if not isinstance(p, dict)]
        if options.get("expression") is not None:
            raise WidgetError("metric math expressions are not rendered by the local cloud")
        parts = [previous[i] if p == "." and i < len(previous) else p for i, p in enumerate(parts)]
        if len(parts) < 2 or len(parts) % 2:
            raise WidgetError(f"metrics row {row!r}: expected Namespace, MetricName and Name/Value pairs")
        previous = parts
        out.append((str(parts[0]), str(parts[1]), [(str(parts[i]), str(parts[i + 1])) for i in range(2, len(parts), 2)],
                    options))
    if not out:
        raise WidgetError("the widget has no metrics")
    return out


Series = Callable[[str, str, list[tuple[str, str]], str, int, datetime, datetime], list[tuple[datetime, float]]]


def render(definition_json: str, series: Series, now: datetime | None = None) -> bytes:
    """The PNG bytes of a widget; `series(namespace, name, dims, stat, period, start, end)` gives the points."""
    try:
        definition = json.loads(definition_json)
    except ValueError:
        raise WidgetError("MetricWidget is not valid JSON") from None
    if not isinstance(definition, dict):
        raise WidgetError("MetricWidget must be a JSON object")
    view = definition.get("view", "timeSeries")
    if view not in VIEWS:
        raise WidgetError(f"view {view!r} is not rendered by the local cloud (supported: {', '.join(VIEWS)})")
    now = ev.utc(now or datetime.now(timezone.utc))
    start = moment(definition.get("start", "-PT3H"), now)
    end = moment(definition["end"], now) if definition.get("end") else now
    if start >= end:
        raise WidgetError("start must be before end")
    width, height = int(definition.get("width", 600)), int(definition.get("height", 400))
    if not (1 <= width <= 2000 and 1 <= height <= 2000):
        raise WidgetError("width and height must be between 1 and 2000 pixels")
    lines = []
    for namespace, name, dims, options in rows(definition):
        if options.get("visible") is False:
            continue
        stat = str(options.get("stat", definition.get("stat", DEFAULT_STAT)))
        period = int(options.get("period", definition.get("period", DEFAULT_PERIOD)))
        label = options.get("label") or name
        lines.append((label, options.get("color"), series(namespace, name, dims, stat, period, start, end)))
    return _draw(definition, view, lines, width, height, start, end)


def _draw(definition: dict[str, Any], view: str, lines: list[Any], width: int, height: int,
          start: datetime, end: datetime) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot state shared between threads

    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    axes = figure.add_subplot()
    if definition.get("title"):
        axes.set_title(str(definition["title"]), fontsize=10)
    if view == "singleValue":
        axes.axis("off")
        for i, (label, color, points) in enumerate(lines):
            text = f"{points[-1][1]:.4g}" if points else "No data"
            y = 1 - (i + 1) / (len(lines) + 1)
            axes.text(0.5, y, text, ha="center", va="center", fontsize=28, color=color or "black")
            axes.text(0.5, y - 0.12, label, ha="center", va="center", fontsize=9)
    else:
        for label, color, points in lines:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None,
                      label=label, **({"color": color} if color else {}))
        for note in (definition.get("annotations") or {}).get("horizontal") or []:
            axes.axhline(float(note["value"]), linestyle="--", color=note.get("color", "#d62728"),
                         label=note.get("label"))
        left = (definition.get("yAxis") or {}).get("left") or {}
        if "min" in left or "max" in left:
            axes.set_ylim(left.get("min"), left.get("max"))
        axes.set_xlim(start, end)
        axes.grid(alpha=0.3)
        if (definition.get("legend") or {}).get("position") != "hidden":
            axes.legend(fontsize=8, loc="upper left")
        figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
