"""README, pipe.yml and the toolkit schema must list the same variables."""

import json
import re
from pathlib import Path

import yaml

from pipe import config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_variables() -> set[str]:
    section = README.split("## Variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| ([A-Z][A-Z0-9_]+)(?: \(\*+\))? +\|", section, re.M))


def test_readme_pipe_yml_and_schema_list_the_same_variables():
    pipe_yml = {v["name"] for v in yaml.safe_load((ROOT / "pipe.yml").read_text())["variables"]}
    schema = set(config.VARIABLES)
    assert readme_variables() == schema
    assert pipe_yml == schema
    assert set(config.toolkit_schema()) == schema | set(config.CONTEXT)


def test_yaml_definition_shows_every_variable():
    definition = README.split("## YAML Definition", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^ +#? ?([A-Z][A-Z0-9_]+):", definition, re.M)) == set(config.VARIABLES)


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in README
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("make test")


def test_changelog_is_generated_from_the_changesets():
    """`make changelog`: semversioner's released versions, plus every pending changeset under Unreleased."""
    import subprocess
    import sys

    generated = subprocess.run([sys.executable, "scripts/changelog.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert (ROOT / "CHANGELOG.md").read_text() == generated
    for change in (ROOT / ".changes/next-release").glob("*.json"):
        assert json.loads(change.read_text())["description"] in generated.split("\n## 0.")[0], change.name
