"""The repository's own test data (``tests/data``), located relative to this file."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
