#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: capacity_plan
short_description: Plan GPUs, MIG layouts, node pools, replicas and cost for a portfolio of LLMs
version_added: 0.1.0
description:
  - Sizes every model on every GPU type and MIG slice of a catalog with the C(gpuops.llm.model_fit)
    core, then chooses each model's slot and packs slices, shares and tensor-parallel groups onto
    GPUs and nodes at the least cost at peak. The choice is one CP-SAT problem (OR-Tools) solved to a
    proven optimum, with a heuristic's plan as its first solution; every MIG layout is one the
    C(gpuops.llm.mig_plan) placement solver accepts. The result says which made the plan, the proven
    bound and the gap.
  - Returns per model the slot and replicas, per GPU its MIG layout with explicit placements, node
    pools with autoscaling minimum and maximum, hourly and monthly cost for static provisioning,
    autoscaling under a 24-hour traffic profile, the naive plan (one whole GPU per replica) and the
    memory lower bound, and inventory variables for the week playbooks.
  - Optionally writes a Markdown report and a PNG diagram, each only when its content differs.
  - Pure computation on the controller; it never contacts a cluster or a GPU.
  - See C(docs/capacity-planning.md).
author:
  - gpuops.llm contributors (@gpuops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode computes the plan and predicts whether the report or diagram would change, writing nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The report's text before and after; the diagram by size only.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
options:
  models:
    description: The models to serve, one entry per endpoint.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Endpoint name, a DNS-1035 label (it becomes the vLLM Deployment name).
        type: str
        required: true
      model:
        description: Hugging Face model id served; default O(models[].name).
        type: str
      config:
        description:
          - The model's C(config.json) fields, as for C(gpuops.llm.model_fit). One of O(models[].config)
            and O(models[].parameters_billion) is required.
        type: dict
      parameters_billion:
        description:
          - Parameter count in billions, when no config is at hand. A dense Llama-shaped config of that
            size is assumed, which is approximate (the KV cache may be off by up to 2x).
          - Needs O(models[].max_model_len).
        type: float
      quantization:
        description: Weight format; omit to take it from the config's C(quantization_config) (or V(none)).
        type: str
        choices: [none, fp8, int8, awq, gptq, bitnet, bitsandbytes, mxfp4, nvfp4, w4a16]
      max_model_len:
        description: vLLM's C(--max-model-len); default the config's C(max_position_embeddings).
        type: int
      kv_cache_dtype:
        description: vLLM's C(--kv-cache-dtype).
        type: str
        choices: [auto, fp8]
      gpu_memory_utilization:
        description: Pin vLLM's C(--gpu-memory-utilization); default the highest one model_fit recommends per slot.
        type: float
      peak_concurrency:
        description: Requests in flight at the peak hour.
        type: float
      avg_context_tokens:
        description: Tokens (prompt and output) of an average request, for the requests a KV cache holds; default O(models[].max_model_len).
        type: int
      requests_per_second:
        description: Requests per second at the peak hour; needs the next two options.
        type: float
      output_tokens_per_request:
        description: Generated tokens per request.
        type: int
      tokens_per_second_per_replica:
        description:
          - Output tokens per second one replica sustains on a whole GPU (an assumption; measure it with the load test).
          - A MIG slice is assumed to get its share of compute slices (a 3g slice 3/7), a time-sliced share 1/n.
        type: float
      max_concurrency_per_replica:
        description: Cap on requests per replica (vLLM's C(--max-num-seqs) or a latency budget).
        type: int
      latency_class:
        description:
          - V(interactive) plans replicas to 60% of their capacity at peak, keeps one replica and never time-slices.
          - V(standard) plans to 75% and keeps one replica; V(batch) plans to 90% and may scale to zero.
        type: str
        choices: [interactive, standard, batch]
        default: standard
      target_utilization:
        description: Override the latency class's share of capacity used at peak (0 to 1).
        type: float
      min_replicas:
        description: Override the latency class's replica floor (0 allows scale to zero).
        type: int
      traffic_profile:
        description: This model's 24 hourly traffic values, instead of O(traffic_profile).
        type: list
        elements: float
      gpu_models:
        description: Restrict this model to these catalog GPU names.
        type: list
        elements: str
      allow_mig:
        description: Let this model run on a MIG slice.
        type: bool
        default: true
      allow_sharing:
        description: Let this model share a whole GPU by time-slicing (needs O(allow_sharing)); default by latency class.
        type: bool
  gpus:
    description:
      - GPU catalog entries to add, or fields to override on the defaults (V(A100-40GB), V(A100-80GB),
        V(H100-80GB), V(H100-NVL), V(H200), V(B200), V(L4), V(L40S)), matched by name.
      - Default prices are public on-demand list prices per GPU-hour and are assumptions; set your own.
    type: list
    elements: dict
    suboptions:
      name:
        description: Catalog name.
        type: str
        required: true
      price_per_hour:
        description: USD per GPU-hour. Required for a GPU not in the defaults.
        type: float
      price_source:
        description: Where the price comes from, for the report.
        type: str
      gpus_per_node:
        description: GPUs per node of this type (the smallest node shape you can buy).
        type: int
      memory_gib:
        description: Usable GiB of one GPU, for a GPU sizing does not know.
        type: float
      sizing_gpu:
        description: The name model_fit knows this GPU by (for example V(H100-80GB)).
        type: str
      mig_model:
        description: The MIG profile table to use (a C(gpuops.llm.mig_plan) GPU name), or V(none) for no MIG.
        type: str
      machine_type:
        description: Passed to the cloud node pool entries (string or dict per provider).
        type: raw
  gpu_models:
    description: Restrict the plan to these catalog GPU names.
    type: list
    elements: str
  max_gpus_per_node:
    description: Most GPUs one node may have; bounds tensor parallelism and node shapes.
    type: int
    default: 8
  allow_mig:
    description: Let the plan partition GPUs with MIG.
    type: bool
    default: true
  allow_sharing:
    description: Let standard and batch models share whole GPUs by time-slicing (no memory or fault isolation).
    type: bool
    default: false
  pools:
    description:
      - Node pools you have or may create, one per GPU type. When given, the plan uses only their GPU types.
    type: list
    elements: dict
    suboptions:
      name:
        description: Pool name, a DNS-1035 label.
        type: str
        required: true
      gpu_model:
        description: Catalog GPU name of the pool's nodes.
        type: str
        required: true
      gpus_per_node:
        description: GPUs per node in this pool.
        type: int
      max_nodes:
        description: Fail when the plan needs more nodes than this at peak.
        type: int
      labels:
        description: Node labels added to the defaults C(workload-class=inference) and C(gpu-type).
        type: dict
      taints:
        description: Taints (key, value, effect); default C(workload=llm-inference:NoSchedule).
        type: list
        elements: dict
  traffic_profile:
    description:
      - Traffic per hour of the day, 24 values, relative to each other (the peak hour is scaled to 1 and
        carries the models' peak targets). Omit for no autoscaling estimate.
    type: list
    elements: float
  hours_per_month:
    description: Hours in a month for monthly costs.
    type: float
    default: 730
  vllm_version:
    description: vLLM version the models will run on (selects model_fit's overhead constants).
    type: str
    default: "0.19.0"
  title:
    description: Title of the report and the diagram.
    type: str
    default: GPU capacity plan
  report_path:
    description: Write the Markdown report here when its content differs. The directory must exist.
    type: path
  diagram_path:
    description:
      - Write the PNG diagram (drawn with matplotlib) here when its content differs. The directory must exist.
      - Without matplotlib on the controller nothing is written here, the module warns, and the report says how to
        get the picture.
    type: path
requirements:
  - ortools (Python, on the controller) to prove the plan optimal; without it the heuristic plans alone and
    the result says so.
  - matplotlib (Python, on the controller, optional) to draw O(diagram_path).
notes:
  - The solver runs on one worker with a deterministic time limit, so the same arguments give the same plan
    and an unchanged report on every run.
  - The PNG is drawn with matplotlib (Agg, no metadata), so the same plan gives the same bytes with the same
    matplotlib. Without matplotlib the report is still written, without the picture, and says how to get it.
seealso:
  - module: gpuops.llm.model_fit
  - module: gpuops.llm.mig_plan
"""

EXAMPLES = r"""
- name: Plan twelve small scoring services on A100-40GB
  gpuops.llm.capacity_plan:
    models:
      - {name: scorer-01, parameters_billion: 0.5, max_model_len: 2048, peak_concurrency: 2}
      - {name: scorer-02, parameters_billion: 0.5, max_model_len: 2048, peak_concurrency: 2}
    gpu_models: [A100-40GB]
    report_path: /tmp/capacity.md
    diagram_path: /tmp/capacity.png
  register: plan

- name: Show what it costs
  ansible.builtin.debug:
    msg: "{{ plan.summary.gpus }} GPUs, {{ plan.costs.static.per_month }} USD/month static"

- name: A chat model with a daily traffic profile and my own A100 price
  gpuops.llm.capacity_plan:
    models:
      - name: chat
        model: meta-llama/Meta-Llama-3-8B-Instruct
        parameters_billion: 8
        max_model_len: 8192
        quantization: awq
        requests_per_second: 4
        output_tokens_per_request: 300
        tokens_per_second_per_replica: 900
        latency_class: interactive
    gpus:
      - {name: A100-80GB, price_per_hour: 2.10, price_source: our contract}
    gpu_models: [A100-80GB]
    traffic_profile: [1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 10, 10, 10, 10, 10, 9, 8, 6, 4, 3, 2, 1, 1]
"""

RETURN = r"""
summary:
  description: Headline numbers. Percentages compare per-hour costs.
  returned: success
  type: dict
  sample: {models: 12, replicas: 12, gpus: 2, nodes: 2, lower_bound_gpus: 1, naive_gpus: 12,
           savings_vs_naive_percent: 83.33, autoscaling_savings_vs_static_percent: 0.0}
costs:
  description:
    - C(static) (the plan at peak all day), C(autoscaling) (average hour under the traffic profile),
      C(naive) and C(lower_bound), each C(per_hour) and C(per_month) in USD; C(hourly) per hour of the day.
  returned: success
  type: dict
models:
  description: Per model the GPU type, slot (MIG profile, whole GPUs or share), replicas, KV tokens and vLLM settings.
  returned: success
  type: list
  elements: dict
gpus:
  description: Every GPU with its pool, node, mode and slots; MIG GPUs carry C(mig_devices) and solver placements.
  returned: success
  type: list
  elements: dict
pools:
  description: Node pools with GPUs per node, nodes at peak, C(min_nodes) and C(max_nodes).
  returned: success
  type: list
  elements: dict
host_groups:
  description: Inventory host groups (nodes with identical GPU layouts) with their MIG variables.
  returned: success
  type: list
  elements: dict
inventory:
  description:
    - Variables for the week playbooks, C(node_pools_pools), C(cloud_node_pools_pools), C(host_groups)
      (with C(mig_devices), C(mig_preset) or a mig-parted config per group), C(vllm_service_models)
      and C(autoscaling_models).
  returned: success
  type: dict
lower_bound:
  description: The memory-based lower bound in GPUs and how it was computed.
  returned: success
  type: dict
solver:
  description:
    - How the plan was made. C(method) is C(cp-sat), C(heuristic, proven optimal by CP-SAT), or
      C(heuristic) with a C(reason) (OR-Tools not installed). C(status) is the solver's (C(optimal),
      C(feasible) at its time limit), C(bound_per_hour) its proven lower bound on the cost at peak,
      C(gap_percent) the plan's distance to it, C(heuristic_cost_per_hour) the heuristic's plan.
  returned: success
  type: dict
  sample: {method: cp-sat, status: optimal, cost_per_hour: 4.6, bound_per_hour: 4.6, gap_percent: 0.0,
           heuristic_cost_per_hour: 5.48, reason: null}
options:
  description: The whole plans compared (mixed, one GPU type for all, naive, and the solver's) with GPUs and cost; one is chosen.
  returned: success
  type: list
  elements: dict
catalog:
  description: The GPU catalog used, with prices and their sources.
  returned: success
  type: list
  elements: dict
files:
  description:
    - For C(report) and C(diagram), the path and whether it changed (or would in check mode).
    - C(diagram) has C(written=false) and a C(reason) when matplotlib is not installed.
  returned: success
  type: dict
  sample: {report: {path: /tmp/capacity.md, changed: true}}
field:
  description: On failure, the option at fault.
  returned: failure
  type: str
  sample: models
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import plan_diagram, planner
from ansible_collections.gpuops.llm.plugins.module_utils.sizing import (
    DEFAULT_VLLM_VERSION,
    KV_CACHE_DTYPES,
    QUANTIZATION_METHODS,
)

MODEL_SPEC = dict(
    name=dict(type="str", required=True),
    model=dict(type="str"),
    config=dict(type="dict"),
    parameters_billion=dict(type="float"),
    quantization=dict(type="str", choices=list(QUANTIZATION_METHODS)),
    max_model_len=dict(type="int"),
    kv_cache_dtype=dict(type="str", choices=list(KV_CACHE_DTYPES)),
    gpu_memory_utilization=dict(type="float"),
    peak_concurrency=dict(type="float"),
    avg_context_tokens=dict(type="int", no_log=False),
    requests_per_second=dict(type="float"),
    output_tokens_per_request=dict(type="int", no_log=False),
    tokens_per_second_per_replica=dict(type="float", no_log=False),
    max_concurrency_per_replica=dict(type="int"),
    latency_class=dict(type="str", choices=list(planner.LATENCY_CLASSES), default="standard"),
    target_utilization=dict(type="float"),
    min_replicas=dict(type="int"),
    traffic_profile=dict(type="list", elements="float"),
    gpu_models=dict(type="list", elements="str"),
    allow_mig=dict(type="bool", default=True),
    allow_sharing=dict(type="bool"),
)

GPU_SPEC = dict(
    name=dict(type="str", required=True),
    price_per_hour=dict(type="float"),
    price_source=dict(type="str"),
    gpus_per_node=dict(type="int"),
    memory_gib=dict(type="float"),
    sizing_gpu=dict(type="str"),
    mig_model=dict(type="str"),
    machine_type=dict(type="raw"),
)

POOL_SPEC = dict(
    name=dict(type="str", required=True),
    gpu_model=dict(type="str", required=True),
    gpus_per_node=dict(type="int"),
    max_nodes=dict(type="int"),
    labels=dict(type="dict"),
    taints=dict(type="list", elements="dict"),
)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _check_dir(module, option, path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        module.fail_json(msg="%s: directory %s does not exist; create it first" % (option, parent), field=option)
    if os.path.isdir(path):
        module.fail_json(msg="%s: %s is a directory; give a file path" % (option, path), field=option)


def _write(module, path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".capacity_plan.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    module.atomic_move(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            models=dict(type="list", elements="dict", required=True, options=MODEL_SPEC),
            gpus=dict(type="list", elements="dict", options=GPU_SPEC),
            gpu_models=dict(type="list", elements="str"),
            max_gpus_per_node=dict(type="int", default=8),
            allow_mig=dict(type="bool", default=True),
            allow_sharing=dict(type="bool", default=False),
            pools=dict(type="list", elements="dict", options=POOL_SPEC),
            traffic_profile=dict(type="list", elements="float"),
            hours_per_month=dict(type="float", default=730),
            vllm_version=dict(type="str", default=DEFAULT_VLLM_VERSION),
            title=dict(type="str", default="GPU capacity plan"),
            report_path=dict(type="path"),
            diagram_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # Validate every path before computing or writing anything.
    for opt in ("report_path", "diagram_path"):
        if p[opt]:
            _check_dir(module, opt, p[opt])
    try:
        result = planner.plan(
            p["models"], gpus=p["gpus"], gpu_models=p["gpu_models"], max_gpus_per_node=p["max_gpus_per_node"],
            allow_mig=p["allow_mig"], allow_sharing=p["allow_sharing"], pools=p["pools"],
            traffic_profile=p["traffic_profile"], hours_per_month=p["hours_per_month"],
            vllm_version=p["vllm_version"])
    except planner.PlannerError as e:
        module.fail_json(msg=str(e), field=e.field)

    outputs, files = [], {}
    drawable = bool(p["diagram_path"]) and plan_diagram.available()
    if p["diagram_path"] and not drawable:
        # matplotlib is optional: the report still comes, and says how to get the picture.
        files["diagram"] = {"path": p["diagram_path"], "changed": False, "written": False,
                            "reason": "matplotlib is not installed (%s)" % plan_diagram.INSTALL_HINT}
        module.warn("diagram_path: the diagram is not drawn: matplotlib is not installed (%s)" % plan_diagram.INSTALL_HINT)
    if p["report_path"]:
        link = note = None
        if drawable:
            link = os.path.relpath(p["diagram_path"], os.path.dirname(os.path.abspath(p["report_path"])))
        elif p["diagram_path"]:
            note = "The GPU layout diagram was not drawn: matplotlib is not installed (%s)." % plan_diagram.INSTALL_HINT
        outputs.append(("report", p["report_path"],
                        planner.render_markdown(result, title=p["title"], diagram=link, note=note).encode("utf-8")))
    if drawable:
        outputs.append(("diagram", p["diagram_path"], plan_diagram.render_png(result, title=p["title"])))

    diffs, changed = [], False
    for kind, path, data in outputs:
        old = _read(path)
        differs = old != data
        files[kind] = {"path": path, "changed": differs}
        changed = changed or differs
        if differs and module._diff:
            if kind == "report":
                diffs.append({"before_header": path, "after_header": path,
                              "before": (old or b"").decode("utf-8", "replace"), "after": data.decode("utf-8")})
            else:
                diffs.append({"before_header": path, "after_header": path,
                              "before": "%s: %s\n" % (path, "%d bytes" % len(old) if old is not None else "absent"),
                              "after": "%s: %d bytes (PNG)\n" % (path, len(data))})
    if not module.check_mode:
        for kind, path, data in outputs:
            if files[kind]["changed"]:
                _write(module, path, data)

    out = dict(result, changed=changed, files=files)
    if module._diff and diffs:
        out["diff"] = diffs
    for m in result["models"]:
        for w in m["warnings"]:
            if "synthesized" in w:
                module.warn("%s: %s" % (m["name"], w))
    module.exit_json(**out)


if __name__ == "__main__":
    main()
