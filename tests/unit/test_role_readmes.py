"""Every role has a README (Galaxy's importer rejects a collection without: "No role readme found"),
and a README generated from meta/argument_specs.yml matches the spec it was generated from."""
from __future__ import annotations

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("role_readme", ROOT / "scripts" / "role_readme.py")
role_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_readme)
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def test_every_role_has_a_readme():
    assert ROLES
    assert [r for r in ROLES if not (ROOT / "roles" / r / "README.md").is_file()] == []


def test_every_readme_is_generated_from_its_argument_specs(capsys):
    # Wholly generated, or hand-written prose around a generated variables section: a README without
    # either fails --check, as does one that drifted from its spec.
    assert role_readme.main(["--check", *ROLES]) == 0, capsys.readouterr().err
    for role in ROLES:
        text = (ROOT / "roles" / role / "README.md").read_text()
        assert role_readme.GENERATED in text or (role_readme.BEGIN in text and role_readme.END in text), role
        spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry in spec.values():
            for name in entry.get("options") or {}:
                assert "| `%s` |" % name in text, (role, name)


def test_a_section_keeps_the_prose_around_it_and_check_finds_drift(tmp_path, monkeypatch, capsys):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {
        "short_description": "Demo", "options": {"demo_x": {"type": "str", "default": "{{ a | b }}",
                                                            "description": "X from E(DEMO_X)."}}}}}))
    monkeypatch.setattr(role_readme, "ROOT", tmp_path)
    prose = "# gpuops.llm.demo\n\nWhy it exists.\n\n## Variables\n\n| old | table |\n\n## Example\n\nrun it\n"
    (role / "README.md").write_text(prose)
    assert role_readme.main(["--check", "demo"]) == 1 and "--adopt demo" in capsys.readouterr().err
    assert role_readme.main(["--adopt", "demo"]) == 0
    text = (role / "README.md").read_text()
    assert text.startswith("# gpuops.llm.demo\n\nWhy it exists.\n\n" + role_readme.BEGIN)
    assert text.endswith(role_readme.END + "\n\n## Example\n\nrun it\n") and "| old | table |" not in text
    # The pipe in a Jinja default is escaped so the table keeps its columns; E() is an env var.
    assert "| `demo_x` | str | `\"{{ a \\| b }}\"` | X from `DEMO_X`. |" in text
    assert role_readme.main(["--check", "demo"]) == 0
    (role / "README.md").write_text(text.replace("Why it exists.", "Why it exists, edited by hand."))
    assert role_readme.main(["--check", "demo"]) == 0      # prose is the author's
    (role / "README.md").write_text(text.replace("X from", "Y from"))
    assert role_readme.main(["--check", "demo"]) == 1      # the section is the spec's


def test_a_generated_readme_lists_every_option_with_its_default():
    for role in ("mig", "chaos"):
        text = (ROOT / "roles" / role / "README.md").read_text()
        assert role_readme.GENERATED in text
        options = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"]["main"]["options"]
        for name in options:
            assert "| `%s` |" % name in text, (role, name)


def test_check_reports_a_stale_readme_and_writes_nothing(tmp_path, monkeypatch, capsys):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {
        "short_description": "Demo", "options": {"demo_x": {"type": "int", "default": 1, "description": "X."}}}}}))
    monkeypatch.setattr(role_readme, "ROOT", tmp_path)
    assert role_readme.main(["demo"]) == 0
    stale = role_readme.GENERATED + "\nold\n"
    (role / "README.md").write_text(stale)
    assert role_readme.main(["--check", "demo"]) == 1
    assert "demo" in capsys.readouterr().err and (role / "README.md").read_text() == stale
    assert role_readme.main(["demo"]) == 0 and "| `demo_x` | int | `1` | X. |" in (role / "README.md").read_text()
