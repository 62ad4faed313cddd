# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the gpuops.llm benchmark suite and print its Markdown table.

    .venv/bin/python benchmarks/run.py [--quick] [--only mig,sizing,...] [--kc-sample 100]

Writes benchmarks/results/latest.json. Benchmarks that need a cluster start their own private testbed
instances under $GPUOPS_BENCH_HOME (default /tmp/gpuops-bench) and stop them at the end; the shared
testbed (~/.cache/gpuops-llm/testbed) is never touched. --quick runs the node pool benchmark at 100
nodes only. Not part of the test suite: it takes minutes and wants a quiet machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

ORDER = ("mig", "sizing", "planner", "site", "node_pools", "testbed")
RESULTS = HERE / "results" / "latest.json"


def run_all(only, quick: bool, kc_sample: int, previous: dict) -> dict:
    res = dict(previous.get("benchmarks", {})) if only else {}
    timings = dict(previous.get("durations_s", {})) if only else {}

    def step(name, fn):
        if only and name not in only:
            return
        common.log("== %s" % name)
        t0 = time.monotonic()
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - one failed benchmark must not hide the others' numbers
            common.log("%s failed: %r" % (name, e))
            res[name] = {"error": repr(e)}
        timings[name] = round(time.monotonic() - t0, 1)

    import bench_mig
    import bench_node_pools
    import bench_planner
    import bench_site
    import bench_sizing
    import bench_testbed
    step("mig", lambda: bench_mig.run(quick))
    step("sizing", lambda: bench_sizing.run(quick))
    step("planner", lambda: bench_planner.run(quick))
    step("site", lambda: bench_site.run(quick))
    step("node_pools", lambda: bench_node_pools.run(quick, kc_full_limit=kc_sample))
    step("testbed", lambda: bench_testbed.run(quick, pools=res.get("node_pools"), site=res.get("site")))
    return res, timings


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def _met(ok) -> str:
    if ok is None:
        return "reported (no target set)"
    if ok == "todo":
        return "**TODO**"
    return "met" if ok else "**missed**"


def _verbs(d: dict) -> str:
    return ", ".join("%s %d" % (k, v) for k, v in d.items()) or "0"


def md_node_pools(r: dict, targets: list) -> list:
    out = ["### 1. Node pools: `gpuops.llm.node_pool` (one task) vs `kubernetes.core.k8s` (one task per node)", "",
           "Three pools (2 GPU, 1 CPU), one label and one taint each; Ansible forks %d. "
           "`~` = kubernetes.core run on a sample of nodes of the same cluster and scaled linearly (see notes)."
           % r.get("forks", 5), "",
           "| nodes | run | kubernetes.core wall | node_pool wall | speed-up | tasks (k.core / node_pool) | "
           "API writes k.core | API writes node_pool |",
           "|---:|---|---:|---:|---:|---|---|---|"]
    for s in r["scales"]:
        kc, np = s["kubernetes_core"], s["node_pool"]
        mark = "~" if kc.get("extrapolated") else ""
        for run in ("first", "rerun"):
            speed = kc[run]["wall_s"] / max(np[run]["wall_s"], 1e-9)
            out.append("| %d | %s | %s%.1f s | %.2f s | %s%.1f× | %s%d / %d | %s%s | %s |" % (
                s["nodes"], run, mark, kc[run]["wall_s"], np[run]["wall_s"], mark, speed,
                mark, kc[run]["tasks"], np[run]["tasks"], mark, _verbs(kc[run]["writes_by_verb"]),
                _verbs(np[run]["writes_by_verb"])))
        if kc.get("extrapolated"):
            ms = kc["measured_sample"]
            out.append("| | measured sample | %d nodes: first %.1f s, rerun %.1f s | | | | | |"
                       % (kc["nodes_run"], ms["first"]["wall_s"], ms["rerun"]["wall_s"]))
        ip = np.get("in_process_check_mode", {})
        if ip:
            out.append("| | node_pool in-process (LIST + plan, check mode) | | %.3f s | | | | |" % ip["wall_s"])
    big = max(r["scales"], key=lambda s: s["nodes"])
    speed = big["kubernetes_core"]["first"]["wall_s"] / max(big["node_pool"]["first"]["wall_s"], 1e-9)
    targets.append(("Node pools: >= 100× faster than kubernetes.core at 1,000 nodes (first run)",
                    big["nodes"] >= 1000 and speed >= 100,
                    "%.0f× at %d nodes%s" % (speed, big["nodes"],
                                             " (baseline extrapolated from a sample)"
                                             if big["kubernetes_core"].get("extrapolated") else "")))
    rr = big["node_pool"]["rerun"]
    targets.append(("Node pools: rerun under 5 s with zero writes",
                    rr["wall_s"] < 5 and rr["writes"] == 0 and rr["changed"] == 0,
                    "%.2f s, %d writes, changed=%d at %d nodes" % (rr["wall_s"], rr["writes"], rr["changed"], big["nodes"])))
    return out


def md_site(r: dict, targets: list) -> list:
    out = ["### 2. `%s` on a private testbed instance (%s)" % (r["playbook"], r["inventory"]), "",
           "| run | wall | tasks | changed | API writes (non-system) | NVML writes |", "|---|---:|---:|---:|---|---:|"]
    for key, label in (("check", "--check, fresh cluster"), ("first", "first converge"), ("rerun", "rerun"),
                       ("check_after", "--check after converge")):
        x = r[key]
        out.append("| %s | %.1f s | %d | %d | %s | %d |" % (
            label, x["wall_s"], x["tasks"], x["changed"], _verbs(x["writes_by_verb"]), x["nvml_writes"]))
    f = r["fidelity"]
    out += ["", "First converge writes by resource: %s." % _verbs(r["first"]["writes_by_resource"]),
            "", "Check-mode fidelity: --check predicted %d changed tasks, the converge reported %d; "
            "%d of %d hosts match; --check wrote %d API objects and made %d NVML writes."
            % (f["predicted_changed"], f["actual_changed"], f["hosts_matching"], f["hosts"], f["check_writes"],
               f["check_nvml_writes"])]
    for key in ("check", "first", "rerun", "check_after"):
        for ft in r[key].get("failed_tasks", []):
            out.append("- %s run FAILED at task `%s`: `%s`" % (key, ft["task"], ft["line"][:300].replace("|", "/")))
    for t, v in f.get("task_mismatches", {}).items():
        out.append("- task `%s`: predicted on %s, changed on %s" % (t, v["predicted"] or "none", v["actual"] or "none"))
    rr = r["rerun"]
    targets.append(("Site: rerun changed=0 and zero writes", rr["rc"] == 0 and rr["changed"] == 0 and rr["writes"] == 0
                    and rr["nvml_writes"] == 0,
                    "changed=%d, %d API writes, %d NVML writes" % (rr["changed"], rr["writes"], rr["nvml_writes"])))
    targets.append(("Site: --check predicts the converge's changes", r["check"]["rc"] == 0
                    and f["predicted_changed"] == f["actual_changed"]
                    and not f.get("task_mismatches") and f["check_writes"] == 0,
                    "predicted %d vs actual %d%s%s" % (
                        f["predicted_changed"], f["actual_changed"],
                        "; the --check run failed (rc %d)" % r["check"]["rc"] if r["check"]["rc"] else "",
                        "; mismatching tasks listed above" if f.get("task_mismatches") else "")))
    return out


def md_mig(r: dict, targets: list) -> list:
    out = ["### 3. MIG", "", "Solver over every profile multiset within count limits and 8 memory slices:", "",
           "| GPU | layouts | placeable | rejected by search | median | p99 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["solver"]:
        out.append("| %s | %d | %d | %d | %.0f µs | %.0f µs | %.0f µs |" % (
            s["gpu"], s["layouts"], s["placeable"], s["rejected_by_search"] + s["rejected_by_rules"],
            s["median_us"], s["p99_us"], s["max_us"]))
    out += ["", "NVML mutating calls on a simulated 8-GPU %s host (simulator call record):" % r["nvml_writes"][0]["gpu"], "",
            "| change | gpuops.llm (kept) | recreate all (mig-parted) | ratio | recreate that GPU only | ratio | rerun |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["nvml_writes"]:
        out.append("| %s | %d (%d kept) | %d | %.0f× | %d | %.1f× | %d |" % (
            s["change"].split(" (GPUs")[0], s["gpuops_calls"], s["gpuops_kept_instances"], s["recreate_all_calls"],
            s["ratio_all"], s["recreate_changed_gpu_calls"], s["ratio_gpu"], s["gpuops_rerun_calls"]))
    worst = max(s["p99_us"] for s in r["solver"])
    targets.append(("MIG: solver time per layout", None,
                    "p99 %.0f µs (worst GPU)" % worst))
    one = r["nvml_writes"][0]
    targets.append(("MIG: one-instance change vs recreating everything (NVML writes)", None,
                    "%d vs %d (%.0f×); a change that must move instances: see the last row"
                    % (one["gpuops_calls"], one["recreate_all_calls"], one["ratio_all"])))
    return out


def md_sizing(r: dict, targets: list) -> list:
    w = r["worst_abs_error_pct"]
    targets.append(("Sizing: model_fit vs published vLLM figures", None,
                    "worst absolute error: weights %.1f%%, KV GiB %.1f%%, KV tokens %.2f%% over %d cases"
                    % (w["weights"], w["kv"], w["tokens"], r["cases"])))
    return ["### 4. Sizing accuracy (benchmarks/sizing_accuracy.py)", "", r["table_md"]]


def md_planner(r: dict, targets: list) -> list:
    name = "Planner: plan cost = CP-SAT's proven optimum (benchmark portfolios, >= 20 random ones), < 60 s each"
    if r.get("status") == "todo":
        targets.append((name, "todo", "TODO, not measured: %s" % r["reason"]))
        return ["### 5. Planner", "", "| portfolio | plan |", "|---|---|", "| **TODO** (%s) | - |" % r["reason"]]
    out = ["### 5. Planner (planner.plan, default prices: assumptions)", "",
           "$ per hour at peak (static). *plan*: what planner.plan returns (CP-SAT over the heuristic's slot "
           "options, the heuristic's plan as its first solution); *bound*: the solver's proven lower bound; "
           "*heuristic*: the same call with `solve_exact=False`; measured in the same run.", "",
           "| portfolio | replicas | GPUs: plan / heuristic / one per replica | plan | bound | gap | heuristic "
           "| heuristic over optimum | one GPU per replica | plan with autoscaling | made by | plan ms |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for p in r["portfolios"]:
        if "error" in p:
            out.append("| %s | planner error: %s |%s" % (p["portfolio"], p["error"], " |" * 10))
            continue
        g, u = p["gpus"], p["usd_per_hour"]
        out.append("| %s | %d | %d / %d / %d | %.2f | %s | %s | %.2f | %+.1f%% | %.2f | %.2f | %s | %.0f |" % (
            p["portfolio"], p["replicas"], g["plan"], g["heuristic"], g["naive"], u["plan"],
            "-" if u["proven_bound"] is None else "%.2f" % u["proven_bound"],
            "-" if p["gap_percent"] is None else "%.1f%%" % p["gap_percent"], u["heuristic"],
            p["heuristic_over_optimum_percent"], u["naive"], u["plan_autoscaling"], p["method"], p["plan_ms"]))
    ok = [p for p in r["portfolios"] if "error" not in p]
    rnd = [p for p in ok if p["kind"] == "random"]
    optimal = [p for p in ok if p["status"] == "optimal" and p["gap_percent"] == 0]
    worse = [p for p in ok if p["heuristic_over_optimum_percent"] > 0]
    slowest = max((p["plan_ms"] for p in ok), default=0)
    met = len(optimal) == len(ok) and len([p for p in rnd if p in optimal]) >= 20 and slowest < 60000
    targets.append((name, met, "%d of %d portfolios proven optimal (%d random); heuristic alone dearer on %d "
                    "(up to %+.1f%%); slowest %.1f s" % (
                        len(optimal), len(ok), len(rnd), len(worse),
                        max((p["heuristic_over_optimum_percent"] for p in ok), default=0), slowest / 1000.0)))
    return out


def md_testbed(r: dict, targets: list) -> list:
    cb = r["cold_build"]
    out = ["### 6. Testbed", "", "| measure | value |", "|---|---|",
           "| cold build (empty Go caches; from %s) | %s |" % (cb["source"], cb.get("text", "n/a"))]
    for k, v in r.get("warm_up_s", {}).items():
        out.append("| warm `up`, new cluster, binaries cached: %s | %.1f s |" % (k, v))
    rss = r.get("control_plane_rss")
    if rss:
        parts = ", ".join("%s %.0f" % (k, v) for k, v in rss["at_peak_mib"].items())
        out.append("| control plane peak RSS with %d nodes | %.0f MiB (%s MiB) |" % (rss["nodes"], rss["peak_total_mib"], parts))
    return out


def markdown(doc: dict) -> str:
    res = doc["benchmarks"]
    targets: list = []
    parts = ["## Results", "", "Run %s on %s (%s cores, %s GiB, load %.1f at start); command `%s`." % (
        doc["date"], doc["machine"]["cpu"], doc["machine"]["nproc"], doc["machine"]["memory_gib"],
        doc["machine"]["loadavg_at_start"], doc["command"]), ""]
    renderers = {"node_pools": md_node_pools, "site": md_site, "mig": md_mig, "sizing": md_sizing,
                 "planner": md_planner, "testbed": md_testbed}
    for name in ("node_pools", "site", "mig", "sizing", "planner", "testbed"):
        if name not in res:
            continue
        if "error" in res[name]:
            parts += ["### %s" % name, "", "**failed**: `%s`" % res[name]["error"], ""]
            targets.append((name, False, "benchmark failed: %s" % res[name]["error"]))
            continue
        try:
            parts += renderers[name](res[name], targets) + [""]
        except Exception as e:  # noqa: BLE001
            parts += ["### %s" % name, "", "**could not render**: `%r`" % e, ""]
    parts += ["### Targets", "", "| target | status | measured |", "|---|---|---|"]
    for name, ok, what in targets:
        parts.append("| %s | %s | %s |" % (name, _met(ok), what))
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="node pools at 100 nodes only")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(ORDER))
    ap.add_argument("--kc-sample", type=int, default=1000,
                    help="most nodes the kubernetes.core baseline runs on; above it a sample runs and is scaled")
    ap.add_argument("--render", action="store_true", help="only print the table of the last results")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in ORDER]
    if bad:
        ap.error("--only: unknown benchmark(s) %s; choose from %s" % (", ".join(bad), ", ".join(ORDER)))
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.render:
        mach = common.machine()
        res, durations = run_all(only, args.quick, args.kc_sample, previous)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = "%s (%s)" % (" ".join(["benchmarks/run.py"] + (argv or sys.argv[1:])), now)
        if only and previous:
            # A partial rerun amends the previous full run; say so rather than pretend it was one run.
            command = "%s; then %s" % (previous.get("command"), command)
            mach = previous.get("machine", mach)
        doc = {"date": now, "machine": mach, "command": command,
               "quick": args.quick, "durations_s": durations, "benchmarks": res}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(doc, indent=1, sort_keys=False))
    else:
        doc = previous
    sys.stdout.write(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
