"""Charts drawn with matplotlib (the optional extra `nextword[plot]`): a neural model's training curves (`nextword
train-neural --plot`) and the benchmarks' charts (`bench/`): line charts and latency histograms. The format follows
the file's suffix: `.png` (raster, 150 dpi) or `.svg` (text kept as text).

matplotlib is imported only when a chart is drawn; without it, `require_matplotlib` raises `PlotError` with the
one-line fix. Nothing here is needed to complete, check or learn text.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm_core.files import make_private_folder, write_private_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = (".png", ".svg")
MISSING = "plotting needs matplotlib: pip install 'nextword[plot]'"
DPI = 150


class PlotError(RuntimeError):
    """A chart cannot be drawn: matplotlib is missing, or the file's suffix names no format we write."""


def require_matplotlib() -> None:
    """Raise `PlotError` (one line, with the install command) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotError(MISSING) from exc


def check_path(path: str | Path) -> Path:
    """`path` as a Path, when its suffix is a format we write (else `PlotError`)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"{path}: a plot is written as .png or .svg, not {path.suffix or 'no suffix'}")
    return path


def _figure(width_in: float = 7.2, height_in: float = 4.4) -> tuple[Figure, Axes]:
    require_matplotlib()
    from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | Path) -> Path:
    """Write the figure in the format of `path`'s suffix, the file 0600 and new folders 0700 (lm_core.files: a
    training curve is drawn from what the person wrote)."""
    path = check_path(path)
    buffer = io.BytesIO()
    with _svg_text_as_text():
        figure.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=DPI, metadata=_metadata(path))
    make_private_folder(path.parent)
    write_private_bytes(path, buffer.getvalue())
    return path


def _metadata(path: Path) -> dict[str, Any]:
    # No dates or version strings in the files, so a re-drawn chart of the same numbers is the same file.
    return {"Software": None} if path.suffix.lower() == ".png" else {"Date": None, "Creator": None}


def _svg_text_as_text() -> Any:
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nextword"})


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def training_curves(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Perplexity (log scale) against epochs: the training loss as it was logged (a line; per epoch where no finer
    curve was kept) and the validation perplexity after each epoch (dots joined). Losses in the metrics are mean
    natural-log losses per token; perplexity = exp(loss)."""
    check_path(path)
    epochs = [float(e) for e in metrics.get("epoch", [])]
    if metrics.get("curve_epoch"):
        train = list(zip(metrics["curve_epoch"], metrics["curve_train_loss"], strict=False))
    else:
        train = list(zip(epochs, metrics.get("train_loss", []), strict=False))
    valid = list(zip(epochs, metrics.get("valid_loss", []), strict=False))
    figure, axes = _figure(6.4, 4.0)
    for name, points, style in (("training", train, "-"), ("validation", valid, "o-")):
        drawn = _finite([(float(x), _exp(loss)) for x, loss in points])
        if drawn:
            xs, ys = zip(*drawn, strict=True)
            axes.plot(xs, ys, style, label=f"{name} perplexity", linewidth=1.8, markersize=5)
    _log_scale(axes.yaxis)
    axes.set_xlabel("epoch")
    axes.set_ylabel("perplexity (per token, log scale)")
    axes.set_title("Training curves")
    if epochs:
        axes.set_xticks(sorted(set(epochs)))
    axes.grid(True, which="both", alpha=0.3)
    if axes.lines:
        axes.legend()
    return _save(figure, path)


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    path: str | Path,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[float] | None = None,
    x_tick_labels: Sequence[str] | None = None,
    y_range: tuple[float, float] | None = (0.0, 100.0),
) -> Path:
    """Named series of (x, y) points as lines with a marker at each point (a series of one point is a marker alone),
    on linear axes, with the legend under the axes (two columns)."""
    check_path(path)
    figure, axes = _figure(8.0, 5.0 + 0.2 * ((len(series) + 1) // 2))
    markers = "osD^vP*X"
    for n, (name, points) in enumerate(series):
        drawn = _finite(points)
        if drawn:
            xs, ys = zip(*drawn, strict=True)
            axes.plot(xs, ys, marker=markers[n % len(markers)], linestyle="-" if len(drawn) > 1 else "", label=name)
    if x_ticks is not None:
        axes.set_xticks(list(x_ticks), labels=list(x_tick_labels) if x_tick_labels is not None else None)
    if y_range is not None:
        axes.set_ylim(*y_range)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    if axes.lines:
        figure.legend(loc="outside lower center", ncols=2, fontsize="small")
    return _save(figure, path)


def latency_histogram(samples: Mapping[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Histograms of latencies in milliseconds, one outlined series per name, on a log-scaled millisecond axis (bins
    evenly spaced in log time), each with its p50 and p99 marked as dashed lines."""
    check_path(path)
    import numpy as np

    figure, axes = _figure()
    values = [v for vs in samples.values() for v in vs if v > 0 and math.isfinite(v)]
    if values:
        bins = np.geomspace(min(values) * 0.95, max(values) * 1.05, 60)
        for n, (name, vs) in enumerate(samples.items()):
            data = np.array([v for v in vs if v > 0 and math.isfinite(v)])
            if not len(data):
                continue
            color = f"C{n}"
            p50, p99 = np.percentile(data, [50, 99])
            axes.hist(data, bins=bins, histtype="step", linewidth=1.6, color=color,
                      label=f"{name} (n={len(data):,}; p50 {p50:.2f}, p99 {p99:.2f} ms)")  # fmt: skip
            for value, style in ((p50, "--"), (p99, ":")):
                axes.axvline(value, color=color, linestyle=style, linewidth=1)
        _log_scale(axes.xaxis)
        axes.legend(fontsize="small")
    axes.set_title(title)
    axes.set_xlabel("latency (ms, log scale); dashed: p50, dotted: p99")
    axes.set_ylabel("requests")
    axes.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def _log_scale(axis: Any) -> None:
    """A log-scaled axis labelled with plain numbers (400, not 4 x 10^2), on minor ticks too when it spans little."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:,.0f}" if x >= 10 else f"{x:g}"

    axis._set_axes_scale("log")
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _exp(loss: float) -> float:
    try:
        return math.exp(loss)
    except (OverflowError, TypeError):
        return math.inf
