"""bitbucket-pipelines.yml and every YAML block of the README are valid Bitbucket Pipelines YAML.

Fragments are wrapped the way Bitbucket reads them where they are pasted: `- step:` items into a pipeline,
script lines (`- pipe: ...`) into a step's script. check-jsonschema validates every document in one process
against its vendored copy of Bitbucket's schema (no network), and a YAML 1.1 loader must read each one too.
"""

import json
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# A fenced ```yaml block, possibly indented inside a list item; the closing fence has the same indent.
FENCE = re.compile(r"^(?P<indent> *)```yaml\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
HEADING = re.compile(r"^#+ +(.+)$", re.M)
STEP_ITEMS = ("- step:", "- parallel:", "- stage:")

# A control the schema must reject, so a checker that validates nothing cannot pass the suite.
UNQUOTED_COLON = '- curl -H "Authorization: Bearer $TOKEN" https://example.com\n'


def readme_blocks() -> dict[str, str]:
    """Each ```yaml block, dedented, named by the heading above it."""
    blocks, seen = {}, Counter()
    for fence in FENCE.finditer(README):
        headings = HEADING.findall(README, 0, fence.start())
        name = headings[-1] if headings else "top"
        seen[name] += 1
        blocks[f"{name} #{seen[name]}" if seen[name] > 1 else name] = textwrap.dedent(fence["body"])
    return blocks


def as_pipeline(block: str) -> str:
    """The smallest bitbucket-pipelines.yml in which the block sits where it is meant to be pasted."""
    first = next(line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if first.startswith(STEP_ITEMS):
        return "pipelines:\n  default:\n" + textwrap.indent(block, " " * 4)
    if first.startswith("- "):  # script lines: a pipe, commands
        return "pipelines:\n  default:\n    - step:\n        script:\n" + textwrap.indent(block, " " * 10)
    return block


DOCUMENTS = {"bitbucket-pipelines.yml": (ROOT / "bitbucket-pipelines.yml").read_text()}
DOCUMENTS.update({name: as_pipeline(block) for name, block in readme_blocks().items()})
CONTROL = as_pipeline(UNQUOTED_COLON)


def yaml11(text: str):
    return yaml.load(text, Loader=yaml.SafeLoader)  # PyYAML implements YAML 1.1, as Bitbucket reads it


def schema_errors(directory: Path) -> dict[str, list[str]]:
    """One check-jsonschema run over every document (and the control), both as the YAML text (the checker reads
    YAML 1.2) and as JSON of its YAML 1.1 reading (`DEBUG: yes` is a boolean there): error messages per name."""
    names = {**DOCUMENTS, "control": CONTROL}
    files = {}
    for index, (name, text) in enumerate(names.items()):
        path = directory / f"{index}.yml"
        path.write_text(text)
        files[str(path)] = name
        try:
            reading = json.dumps(yaml11(text), default=str)
        except yaml.YAMLError:
            continue  # the test's own YAML 1.1 assertion reports it
        path = directory / f"{index}-yaml11.json"
        path.write_text(reading)
        files[str(path)] = name
    run = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.bitbucket-pipelines",
                          "--output-format", "json", *files], capture_output=True, text=True, timeout=120)
    report = json.loads(run.stdout)
    errors = {name: [] for name in names}
    for error in report["errors"]:
        deepest = error.get("best_deep_match") or error
        errors[files[error["filename"]]].append(f"{reading_of(error['filename'])}{deepest['path']}: {deepest['message']}")
    for error in report["parse_errors"]:
        errors[files[error["filename"]]].append(error["message"])
    return errors


def reading_of(filename: str) -> str:
    return "(YAML 1.1 reading) " if filename.endswith("-yaml11.json") else ""


@pytest.fixture(scope="module")
def errors(tmp_path_factory) -> dict[str, list[str]]:
    return schema_errors(tmp_path_factory.mktemp("pipelines"))


def test_every_yaml_block_of_the_readme_is_found():
    assert len(readme_blocks()) == README.count("```yaml") > 0


def test_the_schema_rejects_an_unquoted_colon_in_a_script_line(errors):
    assert any("is not of type 'string'" in message for message in errors["control"])


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_block_is_bitbucket_pipelines_yaml(name, errors):
    assert yaml11(DOCUMENTS[name])
    assert errors[name] == [], f"{name}: Bitbucket's schema rejects it:\n" + "\n".join(errors[name])
