"""Re-draw bench/evaluation.py's charts from the figures it recorded in bench/RESULTS.md, without re-running it
(its full run takes about half an hour on 2 cores): the accuracy and keystroke-savings tables of the
`evaluation-accuracy` section, the adaptation and oddity tables of the `evaluation` section. The charts are the
ones evaluation.py draws (`evaluation.make_plots`), as PNG and SVG.

    python bench/replot.py                      # into bench/plots/
    python bench/replot.py --plots DIR --results OTHER.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.evaluation import KS, PLOTS, Charts, make_plots, stage_name  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"


def section(text: str, name: str) -> str:
    """The body of `<!-- name:start -->` ... `<!-- name:end -->` (ValueError when it is missing)."""
    match = re.search(rf"<!-- {re.escape(name)}:start -->(.*?)<!-- {re.escape(name)}:end -->", text, re.S)
    if match is None:
        raise ValueError(f"RESULTS.md has no section {name!r}")
    return match[1]


def table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after the line that starts with `heading`, as rows keyed by the header's cells."""
    start = text.index(heading)
    lines = [line for line in text[start:].splitlines()[1:]]
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]  # rows[1] is the |---| rule
    return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def charts_from_results(text: str) -> Charts:
    """evaluation.py's charts from its recorded tables (percent, as the tables show them)."""
    charts = Charts()
    accuracy = section(text, "evaluation-accuracy")
    for row in table_after(accuracy, "### Next-word accuracy"):
        points = [(k, number(row[f"top-{k} %"])) for k in KS]
        charts.accuracy_ksr.append((f"{row['Corpus']} {row['Model']}: top-k accuracy", points))
    ksr = [(number(row["k shown"]), number(row["KSR %"])) for row in table_after(accuracy, "### Keystroke savings")]
    charts.accuracy_ksr.append(("PTB KN5: keystroke savings", ksr))

    evaluation = section(text, "evaluation")
    adaptation = table_after(evaluation, "### Personal adaptation")
    for user in dict.fromkeys(row["User text"] for row in adaptation):
        mine = [row for row in adaptation if row["User text"] == user]
        short = user.split(" ")[0]
        charts.adaptation.append((f"{short}: KSR, 3 shown", [(i, number(r["KSR k=3 %"])) for i, r in enumerate(mine)]))
        charts.adaptation.append((f"{short}: top-3 accuracy", [(i, number(r["top-3 %"])) for i, r in enumerate(mine)]))
        if len(mine) > len(charts.stages):
            charts.stages = [stage_name(r["Model"]) for r in mine]
    # The oddity figures: the newest run (`evaluation-oddity`, bench/evaluation.py --section) where there is one.
    oddity = section(text, "evaluation-oddity") if "<!-- evaluation-oddity:start -->" in text else evaluation
    curve = table_after(oddity, "Precision and recall of nextword")
    bits = [number(r["threshold bits"]) for r in curve]
    name = f"nextword, threshold {min(bits):g}-{max(bits):g} bits"
    charts.oddity.append((name, [(number(r["recall %"]), number(r["precision %"])) for r in curve]))
    for row in table_after(oddity, "### Oddity detection"):
        if row["Detector"].startswith("Harper"):
            name = row["Detector"].replace("harper-py, ", "")
            charts.oddity.append((name, [(number(row["recall %"]), number(row["precision %"]))]))
    return charts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"the results file (default {RESULTS})")
    parser.add_argument("--plots", type=Path, default=PLOTS, help=f"where the charts go (default {PLOTS})")
    args = parser.parse_args()
    for path in make_plots(charts_from_results(args.results.read_text(encoding="utf-8")), args.plots):
        print(f"{path} (and {path.with_suffix('.svg').name})")


if __name__ == "__main__":
    main()
