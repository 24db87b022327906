"""Figures the suite reports at the end of `make test` (pytest's terminal summary, see conftest.py)."""

FIGURES: dict[str, str] = {}


def record(name: str, text: str) -> None:
    FIGURES[name] = text
