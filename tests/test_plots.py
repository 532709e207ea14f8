"""Charts (lsp_server/plots.py, the `nextword[plot]` extra): what they show, in PNG and SVG, the same bytes for the
same numbers, and the one-line error without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
from matplotlib.image import imread

from lsp_server import plots

METRICS = {"epoch": [1, 2, 3], "train_loss": [5.0, 4.0, 3.5], "valid_loss": [4.8, 4.1, 3.9]}
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours (C0, C1)


def colours(png: Path) -> set[tuple[int, int, int]]:
    pixels = np.round(imread(png)[:, :, :3] * 255).astype(int).reshape(-1, 3)
    return {tuple(p) for p in np.unique(pixels, axis=0)}


def test_training_curves_as_png_show_both_curves(tmp_path: Path) -> None:
    path = plots.training_curves(METRICS, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(path).shape[:2] == (600, 960)  # 6.4 x 4 inches at 150 dpi
    found = colours(path)
    assert BLUE in found and ORANGE in found


def test_training_curves_as_svg_keep_their_words_as_text(tmp_path: Path) -> None:
    svg = plots.training_curves(METRICS, tmp_path / "curves.svg").read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    for words in ("Training curves", "epoch", "perplexity (per token, log scale)", "training perplexity",
                  "validation perplexity"):  # fmt: skip
        assert f">{words}<" in svg


def test_the_same_numbers_give_the_same_file(tmp_path: Path) -> None:
    for suffix in (".png", ".svg"):
        first = plots.training_curves(METRICS, tmp_path / f"a{suffix}").read_bytes()
        assert plots.training_curves(METRICS, tmp_path / f"b{suffix}").read_bytes() == first
        other = {**METRICS, "valid_loss": [4.8, 4.1, 3.0]}
        assert plots.training_curves(other, tmp_path / f"c{suffix}").read_bytes() != first


def test_a_line_chart_names_its_series_and_axes(tmp_path: Path) -> None:
    series = [("KN5 top-k", [(1, 21.9), (3, 32.4), (5, 37.2)]), ("Harper", [(27.7, 14.1)])]
    svg = plots.line_chart(series, tmp_path / "c.svg", "Accuracy against k", "k shown", "%", (1, 3, 5),
                           ("one", "three", "five")).read_text()  # fmt: skip
    for words in ("Accuracy against k", "k shown", "KN5 top-k", "Harper", "one", "three", "five"):
        assert f">{words}<" in svg


def test_a_latency_histogram_states_each_series_percentiles(tmp_path: Path) -> None:
    samples = {"n-gram": [1.0, 2.0, 3.0, 4.0, 100.0], "blend": [5.0, 5.0, 5.0]}
    svg = plots.latency_histogram(samples, tmp_path / "h.svg", "Completion latency").read_text()
    # numpy's linear percentiles: p50 = 3, p99 = 4 + 0.96 * (100 - 4) = 96.16
    assert ">n-gram (n=5; p50 3.00, p99 96.16 ms)<" in svg
    assert ">blend (n=3; p50 5.00, p99 5.00 ms)<" in svg
    assert ">requests<" in svg


def test_an_unknown_format_is_refused_before_drawing(tmp_path: Path) -> None:
    with pytest.raises(plots.PlotError, match=r"c\.jpg: a plot is written as \.png or \.svg, not \.jpg"):
        plots.training_curves(METRICS, tmp_path / "c.jpg")
    assert not (tmp_path / "c.jpg").exists()


def test_without_matplotlib_the_error_is_one_line_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plots.PlotError) as caught:
        plots.training_curves(METRICS, tmp_path / "c.png")
    assert str(caught.value) == "plotting needs matplotlib: pip install 'nextword[plot]'"
    assert not (tmp_path / "c.png").exists()


def test_matplotlib_is_imported_only_to_draw() -> None:
    """The CLI and the server start without it (start-up time), and lm_core never plots."""
    import subprocess

    modules = "lsp_server.cli, lsp_server.server, lsp_server.plots, lm_core.training"
    code = f"import sys, {modules}; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "False"
    source = (Path(__file__).resolve().parent.parent / "lm_core" / "training.py").read_text()
    assert "matplotlib" not in source and "PNG" not in source
