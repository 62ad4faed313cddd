# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for plugins/module_utils/plan_diagram.py: the capacity plan's diagram drawn with matplotlib
(a test requirement, optional on the controller). The picture is read back with Pillow, which
matplotlib itself depends on."""
from __future__ import annotations

import io

from PIL import Image

from ansible_collections.gpuops.llm.plugins.module_utils import plan_diagram, planner


def _plan():
    models = [{"name": "risk-scorer-%02d" % (i + 1), "parameters_billion": 0.5, "max_model_len": 2048,
               "peak_concurrency": 2} for i in range(12)]
    models.append({"name": "chat", "parameters_billion": 8, "max_model_len": 4096, "peak_concurrency": 8})
    return planner.plan(models, gpu_models=["A100-40GB"])


def test_png_shows_every_model_in_its_colour_and_is_byte_identical_on_rerun():
    r = _plan()
    data = plan_diagram.render_png(r, title="Twelve and a chat model")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data == plan_diagram.render_png(r, title="Twelve and a chat model")
    img = Image.open(io.BytesIO(data)).convert("RGB")
    colours = {c for _n, c in img.getcolors(maxcolors=1 << 20)}
    for name, rgb in plan_diagram.model_colors(r).items():
        assert tuple(rgb) in colours, name
    # No software or date metadata: the bytes depend on the plan only.
    assert b"Software" not in data and b"tIME" not in data
    # One row per GPU: the picture grows with the plan.
    smaller = planner.plan([{"name": "one", "parameters_billion": 0.5, "max_model_len": 2048}],
                           gpu_models=["A100-40GB"])
    assert Image.open(io.BytesIO(plan_diagram.render_png(smaller))).height < img.height


def test_colours_follow_the_plan_order():
    r = _plan()
    colours = plan_diagram.model_colors(r)
    assert list(colours) == [m["name"] for m in r["models"]]
    assert len(set(colours.values())) == len(colours)
