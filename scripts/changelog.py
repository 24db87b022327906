"""CHANGELOG.md: semversioner's changelog of released versions, plus the changes waiting in .changes/next-release
under "Unreleased" (semversioner prints only released versions; the release pipe turns them into the next one)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = {"major": 0, "minor": 1, "patch": 2}


def render() -> str:
    semversioner = Path(sys.executable).parent / "semversioner"
    released = subprocess.run([str(semversioner), "changelog"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pending = [json.loads(path.read_text()) for path in sorted((ROOT / ".changes/next-release").glob("*.json"))]
    if not pending:
        return released
    lines = [f"- {change['type']}: {change['description']}" for change in sorted(pending, key=lambda c: ORDER[c["type"]])]
    head, marker, rest = released.partition("\n## ")
    return f"{head}\n## Unreleased\n\n" + "\n".join(lines) + "\n" + marker + rest


if __name__ == "__main__":
    sys.stdout.write(render())
