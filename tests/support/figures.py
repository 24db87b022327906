"""Figures the suite reports at the end of `make test` (pytest's terminal summary, see conftest.py)."""

from contextlib import contextmanager

FIGURES: dict[str, str] = {}


def record(name: str, text: str) -> None:
    FIGURES[name] = text


ADVERSARIAL_TRIED: list[str] = []
ADVERSARIAL_SAFE: list[str] = []


@contextmanager
def probe(name: str):
    """An attack on the pipe: counted as tried on entry, as safe only if the test's assertions all held."""
    ADVERSARIAL_TRIED.append(name)
    yield
    ADVERSARIAL_SAFE.append(name)
