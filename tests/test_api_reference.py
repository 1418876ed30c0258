"""The book's API reference (api.md) documents every module of ngdlib, so a new module cannot stay out of it."""
import pkgutil
from pathlib import Path

import ngdlib

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_is_in_the_api_reference():
    page = (ROOT / "api.md").read_text()
    modules = [m.name for m in pkgutil.iter_modules(ngdlib.__path__) if not m.name.startswith("_") or m.name in ("_checks", "_linalg")]
    missing = [m for m in modules if f".. automodule:: ngdlib.{m}\n" not in page]
    assert not missing, f"api.md does not document: {missing}"
