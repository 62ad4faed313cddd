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


def test_generated_readmes_match_their_argument_specs(capsys):
    assert role_readme.main(["--check", *ROLES]) == 0, capsys.readouterr().err


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
