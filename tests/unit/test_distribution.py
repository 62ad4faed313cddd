# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distribution: the execution environment definition, collection requirements, and the AWX playbook.

Nothing here talks to AWX or a registry. The AWX playbook runs in its dry-run mode (and in check mode);
a second play then plays AWX's part, feeding the job template's extra_vars and survey answers (marked
!unsafe, as AWX marks them) into the roles' own argument specs.
"""
from __future__ import annotations

import ast
import fnmatch
import functools
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent
AWX_PLAYBOOK = ROOT / "playbooks" / "awx_job_templates.yml"

# The question types the brief allows (AWX also has multiselect; none of our questions needs it).
SURVEY_TYPES = {"text", "textarea", "multiplechoice", "integer", "float", "password"}
# Third-party import name -> the distribution on PyPI that provides it.
IMPORT_TO_DIST = {"kubernetes": "kubernetes", "yaml": "pyyaml", "pynvml": "nvidia-ml-py", "jinja2": "jinja2",
                  "ortools": "ortools", "matplotlib": "matplotlib"}
FQCN = re.compile(r"^([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+$")
OWN = {"ansible.builtin", "gpuops.llm", "ansible.legacy"}


def _load(path: pathlib.Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _ansible(tool: str) -> str:
    path = VENV_BIN / tool
    return str(path) if path.exists() else tool


def _env(**extra) -> dict:
    env = dict(os.environ)
    for key in ("CONTROLLER_HOST", "CONTROLLER_OAUTH_TOKEN", "TOWER_HOST", "TOWER_OAUTH_TOKEN"):
        env.pop(key, None)
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"})
    env.update(extra)
    return env


def _run_json(args: list[str], **env) -> tuple[int, dict, str]:
    """Run ansible-playbook with the JSON callback; return (rc, parsed stdout, stderr)."""
    proc = subprocess.run([_ansible("ansible-playbook"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **env), check=False)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {}
    return proc.returncode, out, proc.stdout + proc.stderr


def _tasks(result: dict) -> dict:
    return {t["task"]["name"]: t["hosts"].get("localhost", {}) for play in result["plays"] for t in play["tasks"]}


def _pip_names(path: pathlib.Path) -> set[str]:
    """Distribution names in a pip requirements file, following -r like pip (relative to the file)."""
    names = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names |= _pip_names(path.parent / line.split(None, 1)[1])
            continue
        names.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


# --------------------------------------------------------------------------------------------------
# execution-environment.yml (ansible-builder 3) and meta/execution-environment.yml
# --------------------------------------------------------------------------------------------------
EE = _load(ROOT / "execution-environment.yml")
META_EE = _load(ROOT / "meta" / "execution-environment.yml")
V3_SECTIONS = {"additional_build_files", "additional_build_steps", "build_arg_defaults", "dependencies",
               "images", "options", "version"}
V3_DEPENDENCIES = {"python", "galaxy", "system", "python_interpreter", "ansible_core", "ansible_runner", "exclude"}
V3_BUILD_STEPS = {f"{w}_{s}" for w in ("prepend", "append") for s in ("base", "galaxy", "builder", "final")}


def _ee_python_files() -> list[pathlib.Path]:
    """requirements files named by the EE's inline -r lines, as they are in this checkout."""
    lines = EE["dependencies"]["python"]
    assert isinstance(lines, list)
    return [ROOT / line.split(None, 1)[1] for line in lines if line.startswith("-r ")]


def test_ee_is_a_version_3_definition_with_its_sections():
    assert EE["version"] == 3
    assert set(EE) <= V3_SECTIONS, set(EE) - V3_SECTIONS
    assert set(EE["dependencies"]) <= V3_DEPENDENCIES
    assert set(EE.get("additional_build_steps", {})) <= V3_BUILD_STEPS
    assert isinstance(EE["images"]["base_image"]["name"], str) and EE["images"]["base_image"]["name"]
    for dep in ("galaxy", "python", "system"):
        assert EE["dependencies"].get(dep), dep
    # ansible-core 2.19 needs Python >= 3.11 in the image.
    assert "2.19" in EE["dependencies"]["ansible_core"]["package_pip"]


def test_ee_dependency_files_exist():
    deps = EE["dependencies"]
    assert deps["galaxy"] == "collections/requirements.yml"
    assert deps["system"] == "bindep.txt"
    for rel in (deps["galaxy"], deps["system"]):
        assert (ROOT / rel).is_file(), rel
    assert [p.relative_to(ROOT).as_posix() for p in _ee_python_files()] == [
        "requirements/controller.txt", "requirements/gpu-host.txt"]
    for path in _ee_python_files():
        assert path.is_file(), path


def test_ee_ships_every_file_its_python_list_names_into_the_build_context():
    # ansible-builder copies only the combined list into _build/; each -r target must travel as an
    # additional build file to the directory the -r line names, and reach the builder stage.
    shipped = {(f["dest"], pathlib.PurePosixPath(f["src"]).name) for f in EE["additional_build_files"]}
    for path in _ee_python_files():
        rel = path.relative_to(ROOT)
        assert (rel.parent.as_posix(), rel.name) in shipped, rel
    builder_steps = " ".join(EE["additional_build_steps"]["prepend_builder"])
    assert "_build/requirements/" in builder_steps


def test_ee_bakes_in_the_built_collection():
    galaxy = _load(ROOT / "galaxy.yml")
    tarball = f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    srcs = [f["src"] for f in EE["additional_build_files"]]
    assert any(fnmatch.fnmatch(tarball, src) for src in srcs), srcs
    assert any("ansible-galaxy collection install" in step and "gpuops-llm-" in step
               for step in EE["additional_build_steps"]["append_galaxy"])


def test_ee_definition_passes_ansible_builder_schema():
    # ansible-builder is a test requirement (requirements/test.txt): its own schema, not a copy of it.
    from ansible_builder import ee_schema
    ee_schema.validate_schema(_load(ROOT / "execution-environment.yml"))
    # The schema is strict enough to catch a typo in a section name.
    with pytest.raises(Exception, match="'dependancies' was unexpected"):
        ee_schema.validate_schema(dict(_load(ROOT / "execution-environment.yml"), dependancies={}))


def test_collection_meta_points_at_files_that_exist_and_are_shipped():
    deps = META_EE["dependencies"]
    assert set(deps) == {"python", "system"}
    galaxy = _load(ROOT / "galaxy.yml")
    for rel in deps.values():
        assert not os.path.isabs(rel)
        assert (ROOT / rel).is_file(), rel
    # ansible-builder reads these from the installed collection: build_ignore must not drop them, nor
    # the files that -r pulls in.
    shipped = [ROOT / deps["python"], ROOT / deps["system"]]
    text = (ROOT / deps["python"]).read_text(encoding="utf-8")
    shipped += [(ROOT / deps["python"]).parent / line.split(None, 1)[1]
                for line in text.splitlines() if line.startswith("-r ")]
    for path in shipped:
        rel = path.resolve().relative_to(ROOT).as_posix()
        for pattern in galaxy.get("build_ignore", []):
            assert not fnmatch.fnmatch(rel, pattern) and not rel.startswith(pattern.rstrip("/") + "/"), (rel, pattern)


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "plugins").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ansible", "ansible_collections", "__future__"):
                    continue
                found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_plugins_import_the_third_party_packages_we_know():
    imports = _third_party_imports()
    # The adapters' reason to exist: kubernetes (k8s.py) and pynvml (nvml.py) are imported.
    assert {"kubernetes", "pynvml"} <= set(imports), imports
    unknown = set(imports) - set(IMPORT_TO_DIST)
    assert not unknown, "add these imports to IMPORT_TO_DIST and to the requirements: %s" % {
        k: sorted(imports[k]) for k in unknown}


@pytest.mark.parametrize("source", ["execution-environment.yml", "meta/execution-environment.yml"])
def test_every_third_party_import_is_in_the_ee_requirements(source):
    if source == "execution-environment.yml":
        names = set().union(*(_pip_names(p) for p in _ee_python_files()))
    else:
        names = _pip_names(ROOT / META_EE["dependencies"]["python"])
    needed = {IMPORT_TO_DIST[m] for m in _third_party_imports() if m in IMPORT_TO_DIST}
    assert needed <= names, needed - names


def test_bindep_lines_are_well_formed():
    line_re = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*( \[[!A-Za-z0-9:._ -]+\])?$")
    entries = [ln.strip() for ln in (ROOT / "bindep.txt").read_text(encoding="utf-8").splitlines()
               if ln.strip() and not ln.strip().startswith("#")]
    assert entries
    for entry in entries:
        assert line_re.match(entry), entry
    # One package per platform family for the SSH client the GPU host roles connect with.
    assert "openssh-clients [platform:rpm]" in entries and "openssh-client [platform:dpkg]" in entries


# --------------------------------------------------------------------------------------------------
# collections/requirements.yml
# --------------------------------------------------------------------------------------------------
REQS = {c["name"]: c.get("version", "*") for c in _load(ROOT / "collections" / "requirements.yml")["collections"]}


def _yaml_files():
    yield from sorted((ROOT / "roles").rglob("*.yml")) + sorted((ROOT / "playbooks").glob("*.yml"))


class _TagLoader(yaml.SafeLoader):
    """SafeLoader that reads tagged scalars (!unsafe, !vault) as plain strings."""


_TagLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                 if isinstance(node, yaml.ScalarNode) else None)
_ROLE_INCLUDES = {"ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"}
_JINJA_FQCN = re.compile(
    r"(?:lookup|query|q)\(\s*['\"]([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+['\"]"
    r"|(?:\||\bis\b|\bmap\(|\bselect\(|\breject\()\s*['\"]?([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+")


@functools.lru_cache(maxsize=None)
def _used_collections() -> dict[str, set[str]]:
    """Collections named by FQCN in roles/ and playbooks/: task keywords (modules, action groups),
    roles, and lookups / filters / tests inside Jinja."""
    used: dict[str, set[str]] = {}

    def note(value: str, where: pathlib.Path):
        m = FQCN.match(value)
        if m and f"{m.group(1)}.{m.group(2)}" not in OWN:
            used.setdefault(f"{m.group(1)}.{m.group(2)}", set()).add(where.relative_to(ROOT).as_posix())

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str):
                    note(key[len("group/"):] if key.startswith("group/") else key, where)
                    if key in _ROLE_INCLUDES and isinstance(value, dict) and isinstance(value.get("name"), str):
                        note(value["name"], where)
                    if key == "role" and isinstance(value, str):
                        note(value, where)
                    if key == "roles" and isinstance(value, list):
                        for item in value:
                            if isinstance(item, str):
                                note(item, where)
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, str):
            for m in _JINJA_FQCN.finditer(node):
                coll = m.group(1) or m.group(2)
                note(coll + ".x", where)

    for path in _yaml_files():
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_TagLoader):
            walk(doc, path)
    return used


def test_the_collection_scan_finds_what_the_roles_are_known_to_use():
    used = _used_collections()
    # A check on the scanner itself, from files read by hand: cloud_node_pools calls one module of
    # each cloud, device_plugin calls kubernetes.core.helm, the AWX playbook awx.awx.
    assert {"kubernetes.core", "google.cloud", "community.aws", "azure.azcollection", "awx.awx"} <= set(used), used
    assert "roles/cloud_node_pools/tasks/gke.yml" in used["google.cloud"]


def test_requirements_cover_every_collection_used_in_roles_and_playbooks():
    used = _used_collections()
    missing = {c: sorted(w) for c, w in used.items() if c not in REQS}
    assert not missing, missing


def test_requirements_include_galaxy_dependencies_with_the_same_ranges():
    for name, spec in _load(ROOT / "galaxy.yml")["dependencies"].items():
        assert REQS.get(name) == spec, (name, REQS.get(name), spec)
    # community.aws's modules run on amazon.aws's module_utils.
    assert "amazon.aws" in REQS and "community.aws" in REQS
    assert "gpuops.llm" not in REQS


def _version(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def test_installed_collections_satisfy_the_floors():
    proc = subprocess.run([_ansible("ansible-galaxy"), "collection", "list", "--format", "json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    installed: dict[str, str] = {}
    for colls in json.loads(proc.stdout).values():
        for name, info in colls.items():
            installed.setdefault(name, info["version"])
    for name, spec in REQS.items():
        assert name in installed, name
        for clause in spec.split(","):
            m = re.match(r"\s*>=\s*([\d.]+)", clause)
            if m:
                assert _version(installed[name]) >= _version(m.group(1)), (name, installed[name], spec)


# --------------------------------------------------------------------------------------------------
# playbooks/awx_job_templates.yml
# --------------------------------------------------------------------------------------------------
def test_awx_playbook_syntax_check():
    proc = subprocess.run([_ansible("ansible-playbook"), "--syntax-check", str(AWX_PLAYBOOK)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dry_run():
    rc, out, text = _run_json([str(AWX_PLAYBOOK), "--check", "-e", "awx_dry_run=true"])
    assert rc == 0, text
    return out


@pytest.fixture(scope="module")
def job_templates(dry_run):
    shown = _tasks(dry_run)["Show what would be defined (dry run)"]
    return shown["__awx_job_templates"]


def test_dry_run_in_check_mode_skips_every_awx_task_and_changes_nothing(dry_run):
    pb = yaml.load(AWX_PLAYBOOK.read_text(encoding="utf-8"), Loader=_TagLoader)
    awx_tasks = [t["name"] for t in pb[0]["tasks"][-1]["block"] if any(k.startswith("awx.awx.") for k in t)]
    assert len(awx_tasks) >= 6
    results = _tasks(dry_run)
    for name in awx_tasks:
        assert results[name].get("skipped") is True, name
    assert dry_run["stats"]["localhost"]["changed"] == 0
    assert dry_run["stats"]["localhost"]["failures"] == 0


def _awx_module_options(module: str) -> dict:
    """Documented options of an awx.awx module (its DOCUMENTATION plus the auth doc fragment)."""
    for entry in sys.path:
        base = pathlib.Path(entry) / "ansible_collections" / "awx" / "awx" / "plugins"
        if (base / "modules" / f"{module}.py").is_file():
            break
    else:
        pytest.fail(f"awx.awx.{module} is not installed (it comes with the `ansible` package)")
    tree = ast.parse((base / "modules" / f"{module}.py").read_text(encoding="utf-8"))
    doc = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", None) == "DOCUMENTATION")
    options = dict(yaml.safe_load(doc)["options"])
    fragment = ast.parse((base / "doc_fragments" / "auth.py").read_text(encoding="utf-8"))
    for node in ast.walk(fragment):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            options.update(yaml.safe_load(node.value.value)["options"])
    for name, opt in list(options.items()):
        for alias in opt.get("aliases") or []:
            options[alias] = opt
    return options


def test_awx_tasks_use_only_documented_options_and_choices():
    pb = yaml.load(AWX_PLAYBOOK.read_text(encoding="utf-8"), Loader=_TagLoader)
    block = pb[0]["tasks"][-1]
    calls = [(key, args) for task in block["block"] for key, args in task.items() if key.startswith("awx.awx.")]
    for group_args in block["module_defaults"].values():
        calls.append(("awx.awx.project", group_args))
    checked = 0
    for fqcn, args in calls:
        options = _awx_module_options(fqcn.split(".")[-1])
        for key, value in args.items():
            assert key in options, (fqcn, key)
            choices = options[key].get("choices")
            if choices and isinstance(value, str) and "{{" not in value:
                assert value in choices, (fqcn, key, value, choices)
            checked += 1
    assert checked > 30


def test_one_job_template_per_week_plus_site(job_templates):
    playbooks = [t["playbook"] for t in job_templates]
    assert playbooks == ["playbooks/week1_foundation.yml", "playbooks/week2_models.yml",
                         "playbooks/week3_autoscaling.yml", "playbooks/week4_observability.yml",
                         "playbooks/site.yml"]
    for rel in playbooks:
        assert (ROOT / rel).is_file(), rel
    assert len({t["name"] for t in job_templates}) == len(job_templates)


def _check_awx_survey(spec: dict) -> list[str]:
    """AWX's survey rules (awx/api/views JobTemplateSurveySpec), restated."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append(f"{field} must be a {kind.__name__}")
    if errors or not spec["spec"]:
        return errors or ["spec is empty"]
    seen = set()
    for i, q in enumerate(spec["spec"]):
        where = f"question {i} ({q.get('variable')})"
        for field in ("type", "question_name", "variable"):
            if not isinstance(q.get(field), str) or not q[field]:
                errors.append(f"{where}: {field} must be a non-empty string")
        if not isinstance(q.get("required"), bool):
            errors.append(f"{where}: required must be a boolean")
        if q.get("variable") in seen:
            errors.append(f"{where}: variable asked twice")
        seen.add(q.get("variable"))
        qtype = q.get("type")
        if qtype not in SURVEY_TYPES:
            errors.append(f"{where}: type {qtype!r} not in {sorted(SURVEY_TYPES)}")
            continue
        for key in ("min", "max"):
            if key in q and q[key] is not None and (not isinstance(q[key], int) or isinstance(q[key], bool)):
                errors.append(f"{where}: {key} must be an integer")
        default = q.get("default", "")
        if qtype == "multiplechoice":
            choices = q.get("choices")
            if isinstance(choices, str):
                choices = [c for c in choices.splitlines() if c.strip()]
            if not choices:
                errors.append(f"{where}: multiplechoice needs choices")
            elif default != "" and default not in choices:
                errors.append(f"{where}: default {default!r} not among the choices")
        elif qtype == "integer" and default != "":
            if not isinstance(default, int) or isinstance(default, bool):
                errors.append(f"{where}: integer default {default!r}")
            elif not q.get("min", default) <= default <= q.get("max", default):
                errors.append(f"{where}: default {default} outside min/max")
        elif qtype == "float" and default != "" and not isinstance(default, (int, float)):
            errors.append(f"{where}: float default {default!r}")
        elif qtype in ("text", "textarea", "password") and not isinstance(default, str):
            errors.append(f"{where}: default must be a string")
        if qtype in ("text", "textarea", "password") and isinstance(default, str) and default:
            if "min" in q and len(default) < q["min"] or "max" in q and len(default) > q["max"]:
                errors.append(f"{where}: default length outside min/max")
    return errors


def test_the_survey_checker_rejects_what_awx_rejects():
    good = {"name": "s", "description": "", "spec": [
        {"question_name": "q", "variable": "v", "type": "multiplechoice", "required": True,
         "choices": ["a", "b"], "default": "a"}]}
    assert _check_awx_survey(good) == []
    for change in ({"type": "checkbox"}, {"required": "yes"}, {"default": "c"}, {"choices": []}):
        bad = json.loads(json.dumps(good))
        bad["spec"][0].update(change)
        assert _check_awx_survey(bad), change
    twice = json.loads(json.dumps(good))
    twice["spec"].append(dict(twice["spec"][0]))
    assert _check_awx_survey(twice)


def test_every_rendered_survey_is_valid_awx_survey_json(job_templates):
    for jt in job_templates:
        spec = json.loads(json.dumps(jt["survey_spec"]))  # what the module sends: plain JSON
        assert _check_awx_survey(spec) == [], (jt["name"], _check_awx_survey(spec))


def _questions(job_templates, name_part: str) -> dict[str, dict]:
    jt = next(t for t in job_templates if name_part in t["name"])
    return {q["variable"]: q for q in jt["survey_spec"]["spec"]}


@functools.lru_cache(maxsize=None)
def _role_options() -> dict:
    """Every option of every role's main entry point, by name."""
    options = {}
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        options.update(_load(path)["argument_specs"].get("main", {}).get("options") or {})
    return options


def _role_option(var: str) -> dict | None:
    return _role_options().get(var)


def _playbook_text(path: pathlib.Path) -> str:
    """A playbook's text and that of the playbooks it imports."""
    text = path.read_text(encoding="utf-8")
    for play in yaml.load(text, Loader=_TagLoader) or []:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:
            text += _playbook_text(path.parent / imported)
    return text


def test_week1_survey_asks_pools_mig_preset_and_strategy(job_templates):
    q = _questions(job_templates, "week 1")
    # The strategy choices are the device plugin role's own.
    assert q["device_plugin_mig_strategy"]["choices"] == _role_option("device_plugin_mig_strategy")["choices"]
    assert q["mig_preset"]["type"] == "multiplechoice"
    assert {"gpuops_awx_inference_group", "gpuops_awx_training_group"} <= set(q)


def test_mig_preset_choices_are_disabled_balanced_and_every_1g_profile_of_the_tables(job_templates):
    from ansible_collections.gpuops.llm.plugins.module_utils import mig

    choices = _questions(job_templates, "week 1")["mig_preset"]["choices"]
    assert choices[:2] == ["all-disabled", "all-balanced"]
    one_g = {name for model in mig.MODELS.values() for name in mig.preset_names(model)
             if name.startswith("all-1g.") and not name.endswith(".me")}
    assert set(choices[2:]) == one_g
    # Each choice is a preset the mig module resolves for at least one GPU model.
    for choice in choices:
        assert any(choice in mig.preset_names(model) for model in mig.MODELS.values()), choice


def test_survey_defaults_match_the_roles_defaults(job_templates):
    from ansible_collections.gpuops.llm.plugins.module_utils import autoscaling

    site = _questions(job_templates, "site")
    obs = _load(ROOT / "roles" / "observability" / "defaults" / "main.yml")
    for var in ("observability_gpu_temperature_threshold_celsius", "observability_inference_queue_threshold",
                "observability_kv_cache_threshold_percent"):
        assert site[var]["default"] == obs[var], var
    assert site["gpuops_awx_queue_threshold"]["default"] == autoscaling.DEFAULTS["queue_threshold"]
    assert site["gpuops_awx_gpu_threshold"]["default"] == autoscaling.DEFAULTS["gpu_threshold"]


def test_site_asks_every_question_of_the_weeks(job_templates):
    site = set(_questions(job_templates, "site"))
    for week in ("week 1", "week 2", "week 3", "week 4"):
        assert set(_questions(job_templates, week)) <= site, week


def test_every_survey_variable_reaches_a_role_or_a_playbook(job_templates):
    for jt in job_templates:
        mapped_sources = " ".join(str(v) for v in jt["extra_vars"].values())
        playbook_text = _playbook_text(ROOT / jt["playbook"])
        for q in jt["survey_spec"]["spec"]:
            var = q["variable"]
            assert (_role_option(var) is not None or re.search(rf"\b{var}\b", mapped_sources)
                    or var in playbook_text), (jt["name"], var)
        for var in jt["extra_vars"]:
            assert _role_option(var) is not None, (jt["name"], var)


def test_job_template_extra_vars_are_left_for_awx_to_render(job_templates):
    week2 = next(t for t in job_templates if "week 2" in t["name"])
    assert week2["extra_vars"]["vllm_service_models"].startswith("{{")


class _Unsafe(str):
    pass


class _AwxDumper(yaml.SafeDumper):
    """Writes _Unsafe strings with the !unsafe tag, as AWX writes survey answers into extra vars."""


_AwxDumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def test_awx_launch_turns_answers_into_valid_role_variables(job_templates, tmp_path):
    """Play AWX's part for the site template: its saved extra_vars plus !unsafe survey answers go to a
    play that validates them with the roles' own argument specs and prints them."""
    site = next(t for t in job_templates if t["name"].endswith("site"))
    models = [{"name": "llama3-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu_model": "L4"}]
    answers = {q["variable"]: q["default"] for q in site["survey_spec"]["spec"]}
    answers.update({
        "gpuops_awx_inference_group": "my_inference",
        "gpuops_awx_models": yaml.safe_dump(models),
        "gpuops_awx_autoscaling_models": json.dumps([{"name": "llama3-8b", "max_replicas": 4}]),
        "gpuops_awx_queue_threshold": 7,
        "mig_preset": "all-1g.10gb",
        "device_plugin_mig_strategy": "single",
    })
    extra = dict(site["extra_vars"])
    extra.update({k: _Unsafe(v) if isinstance(v, str) else v for k, v in answers.items()})
    (tmp_path / "extravars.yml").write_text(yaml.dump(extra, Dumper=_AwxDumper), encoding="utf-8")
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "my_inference": {"hosts": {"gpu-a": None, "gpu-b": None}},
        "llm_training": {"hosts": {"gpu-t": None}}}}}), encoding="utf-8")

    checked = sorted(v for v in {**site["extra_vars"], **answers} if _role_option(v) is not None)
    spec = {v: {k: val for k, val in _role_option(v).items() if k != "default"} for v in checked}
    play = [{"name": "AWX launch", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "validate", "ansible.builtin.validate_argument_spec": {
            "argument_spec": spec, "provided_arguments": {v: "{{ %s }}" % v for v in checked}}},
        {"name": "show", "ansible.builtin.debug": {"msg": {v: "{{ %s }}" % v for v in checked}}},
        # An answer that parses but is no list of models: the role's spec refuses it.
        {"name": "validate a bad models answer", "ignore_errors": True,
         "vars": {"bad_models": "{{ '- name: only-a-name' | ansible.builtin.from_yaml }}"},
         "ansible.builtin.validate_argument_spec": {
             "argument_spec": {"vllm_service_models": spec["vllm_service_models"]},
             "provided_arguments": {"vllm_service_models": "{{ bad_models }}"}}},
    ]}]
    (tmp_path / "launch.yml").write_text(yaml.safe_dump(play), encoding="utf-8")
    rc, out, text = _run_json(["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "launch.yml"),
                               "-e", "@" + str(tmp_path / "extravars.yml")])
    assert rc == 0, text
    got = _tasks(out)["show"]["msg"]
    assert sorted(got["node_pools_inference_hosts"]) == ["gpu-a", "gpu-b"]
    assert got["node_pools_training_hosts"] == ["gpu-t"]
    assert got["vllm_service_models"] == models
    assert got["autoscaling_models"] == [{"name": "llama3-8b", "max_replicas": 4}]
    assert got["autoscaling_model_defaults"] == {"queue_threshold": 7,
                                                 "gpu_threshold": answers["gpuops_awx_gpu_threshold"]}
    assert got["mig_preset"] == "all-1g.10gb" and got["device_plugin_mig_strategy"] == "single"
    bad = _tasks(out)["validate a bad models answer"]
    assert bad.get("failed") is True and "model" in json.dumps(bad.get("argument_errors") or bad.get("msg")), bad


def test_without_dry_run_or_a_host_the_playbook_stops_before_any_awx_call():
    rc, out, text = _run_json([str(AWX_PLAYBOOK), "--check"])
    assert rc != 0
    results = _tasks(out)
    assert results["Check the inputs"].get("failed") is True
    assert "CONTROLLER_HOST" in results["Check the inputs"]["msg"]
    assert "Define the project" not in results


def test_a_survey_default_outside_its_range_fails_the_dry_run():
    rc, out, text = _run_json([str(AWX_PLAYBOOK), "-e", "awx_dry_run=true",
                               "-e", '{"awx_default_kv_cache_threshold": 150}'])
    assert rc != 0
    failed = _tasks(out)["Check every survey question before anything is sent"]
    assert "observability_kv_cache_threshold_percent" in json.dumps(failed), text
