# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read ansible-playbook's default output: the recap per host, and which task changed or failed where.

Shared by tests/integration and benchmarks/. A role names a check-mode stand-in task like the task
it stands in for plus " (check mode, ...)" (roles/observability); changed_tasks counts the stand-in
as that task, so --check and a real run can be compared task by task.
"""
from __future__ import annotations

import collections
import re

TASK_RE = re.compile(r"^TASK \[(.*)\] \*+$")
CHANGED_RE = re.compile(r"^changed: \[([^\]\s]+)(?: -> [^\]]+)?\]")
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                      r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)
STAND_IN_RE = re.compile(r" \(check mode, [^)]*\)$")
RECAP_FIELDS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


def recap(stdout: str) -> dict:
    """{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}} from the PLAY RECAP."""
    return {m.group(1): dict(zip(RECAP_FIELDS, map(int, m.groups()[1:]))) for m in RECAP_RE.finditer(stdout)}


def _by_task(stdout: str):
    """(task name with any stand-in suffix removed, line) for every line under a TASK header."""
    task = None
    for line in stdout.splitlines():
        m = TASK_RE.match(line)
        if m:
            task = STAND_IN_RE.sub("", m.group(1))
        elif task:
            yield task, line


def changed_tasks(stdout: str) -> dict:
    """{task name: sorted hosts it reported changed on}."""
    out = collections.defaultdict(set)
    for task, line in _by_task(stdout):
        m = CHANGED_RE.match(line)
        if m:
            out[task].add(m.group(1))
    return {t: sorted(h) for t, h in out.items()}


def failed_tasks(stdout: str) -> list:
    """[{task, line}] for every "fatal: [host]" line, the line cut at 400 characters."""
    return [{"task": task, "line": line[:400]} for task, line in _by_task(stdout) if line.startswith("fatal: [")]
