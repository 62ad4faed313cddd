# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capacity plan's GPU layout diagram, drawn with matplotlib.

Each GPU is a row of its memory slices (8, or 4 on A30-class GPUs); each MIG instance is a box
spanning its placement, a time-sliced share a box of its fraction, a whole GPU one box; boxes are
coloured per model and labelled with the model and the slot.

matplotlib is an optional controller requirement: ``available()`` says whether it can be imported,
and the capacity_plan module then writes the report without the picture and says how to get it.
Only the object-oriented API and the Agg canvas are used (no pyplot, no global backend), and the
PNG carries no software or date metadata, so the same plan gives the same bytes on every run
with the same matplotlib (a rerun must not rewrite the diagram).
"""
from __future__ import annotations

import io

# Distinct, colour-blind-friendlier fills (Okabe-Ito first, then Tableau-like tints).
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (153, 153, 153), (148, 103, 189), (140, 86, 75), (188, 189, 34), (23, 190, 207),
           (255, 187, 120), (174, 199, 232), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148)]

INSTALL_HINT = "pip install matplotlib on the controller"


def available():
    try:
        import matplotlib  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        return False
    return True


def model_colors(result):
    """RGB (0-255) per model name, in the plan's model order."""
    return {m["name"]: PALETTE[i % len(PALETTE)] for i, m in enumerate(result["models"])}


def _usd(x):
    return "$%s" % format(x, ",.2f")


def _boxes(g, n):
    """(start, end, model, label) in memory slices for one GPU row."""
    out = []
    for sl in g["slots"]:
        if g["mode"] == "mig":
            out.append((sl["start"], sl["start"] + sl["size"], sl["model"], sl["profile"]))
        elif g["mode"] == "shared":
            out.append((sl["start"] * n, (sl["start"] + sl["size"]) * n, sl["model"], "1/%d shared" % sl["share"]))
        else:
            tp = " TP %d/%d" % (sl["tp_rank"] + 1, sl["tp"]) if sl["tp"] > 1 else ""
            out.append((0, n, sl["model"], "whole GPU" + tp))
    return out


def _ink(rgb):
    # Dark text on light fills, white on dark ones (relative luminance).
    return "#000000" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "#ffffff"


def render_png(result, title="GPU capacity plan"):
    """The diagram as PNG bytes. Raises ImportError when matplotlib is not installed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    colors = model_colors(result)
    gpus = result["gpus"]
    cols = max([g.get("memory_slices", 8) for g in gpus] + [8])
    legend_rows = (len(result["models"]) + 2) // 3
    height = 1.3 + 0.75 * len(gpus) + 0.3 * legend_rows + 0.5
    fig = Figure(figsize=(14, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.17, (0.3 * legend_rows + 0.5) / height, 0.80, 0.75 * max(len(gpus), 1) / height])
    ax.set_xlim(0, cols)
    ax.set_ylim(len(gpus), 0)
    ax.set_xticks([k + 0.5 for k in range(cols)], [str(k) for k in range(cols)], fontsize=8, color="#777777")
    ax.xaxis.set_ticks_position("top")
    ax.set_xlabel("memory slice", fontsize=8, color="#777777")
    ax.xaxis.set_label_position("top")
    ax.set_yticks([i + 0.5 for i in range(len(gpus))],
                  ["GPU %d %s\n%s node %d" % (g["id"], g["gpu"], g["pool"], g["node"]) for g in gpus], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    for row, g in enumerate(gpus):
        n = g.get("memory_slices", cols)
        for k in range(n):
            ax.add_patch(Rectangle((k, row + 0.05), 1, 0.9, facecolor="#ebebeb", edgecolor="#c8c8c8", linewidth=0.8))
        for x0, x1, model, label in _boxes(g, n):
            rgb = colors[model]
            ax.add_patch(Rectangle((x0 + 0.03, row + 0.08), x1 - x0 - 0.06, 0.84, facecolor=[c / 255.0 for c in rgb],
                                   edgecolor="#282828", linewidth=1.2))
            ax.text(x0 + 0.1, row + 0.5, "%s\n%s" % (model, label), fontsize=7, va="center", ha="left",
                    color=_ink(rgb), clip_on=True, parse_math=False)
    s, c = result["summary"], result["costs"]
    fig.text(0.01, 1 - 0.35 / height, title, fontsize=14, weight="bold", va="center", parse_math=False)
    fig.text(0.01, 1 - 0.75 / height, "%d GPUs (naive %d)  %s/h static  %s/h autoscaled  %s%% below naive  (%s)"
             % (s["gpus"], s["naive_gpus"], _usd(c["static"]["per_hour"]), _usd(c["autoscaling"]["per_hour"]),
                s["savings_vs_naive_percent"], (result.get("solver") or {}).get("method", "heuristic")),
             fontsize=9, color="#3c3c3c", va="center", parse_math=False)   # "$" is a price, not TeX
    for i, m in enumerate(result["models"]):
        x = 0.01 + (i % 3) * 0.33
        y = (0.3 * legend_rows + 0.2 - 0.3 * (i // 3)) / height
        fig.patches.append(Rectangle((x, y - 0.08 / height), 0.012, 0.16 / height, transform=fig.transFigure,
                                     facecolor=[v / 255.0 for v in colors[m["name"]]], edgecolor="#282828",
                                     figure=fig))
        fig.text(x + 0.018, y, "%s x%d %s" % (m["name"], m["replicas"], m["slot"]), fontsize=8, va="center",
                 parse_math=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
