"""The mutation catalogue stays applicable (fast; the mutants themselves run with `make test-mutants`).

Every mutant's snippet must occur exactly once in its file and the mutated file must compile, so an edit of the
library that moves a snippet is noticed here (update the entry) rather than as an error in the next mutation run.
"""
import json
from pathlib import Path

import pytest
import yaml

from tests.mutants import run

ROOT = Path(__file__).resolve().parents[1]
CAT = run.load_catalogue()
NBS = run.claim_notebooks()
CLAIMS = [c["id"] for c in yaml.safe_load((ROOT / "claims.yml").read_text())]


def test_size_and_every_claim_covered():
    assert len(CAT["mutants"]) >= 40
    covered = {c for m in CAT["mutants"] for c in m["claims"]}
    assert not set(CLAIMS) - covered, f"claims without a mutant: {sorted(set(CLAIMS) - covered)}"
    assert not covered - set(CLAIMS), f"mutants name unknown claims: {sorted(covered - set(CLAIMS))}"


@pytest.mark.parametrize("m", CAT["mutants"], ids=[m["id"] for m in CAT["mutants"]])
def test_mutant_applies(m):
    src = (ROOT / m["file"]).read_text()
    assert src.count(m["original"]) == 1, f"{m['id']}: the original snippet must occur exactly once in {m['file']}"
    new = src.replace(m["original"], m["replacement"])
    assert new != src
    compile(new, m["file"], "exec")
    notebooks, tests = run.targets(m, CAT, NBS)
    assert notebooks or tests, f"{m['id']}: nothing would run against it"
    for p in notebooks + tests:
        assert (ROOT / p).exists(), f"{m['id']}: target {p} does not exist"


def test_module_tests_exist():
    for f, tests in CAT["module_tests"].items():
        assert (ROOT / f).is_file(), f
        for t in tests:
            assert (ROOT / t).is_file(), t


def test_apply_refuses_a_missing_snippet(tmp_path):
    (tmp_path / "ngdlib").mkdir()
    (tmp_path / "ngdlib" / "x.py").write_text("a = 1\n")
    m = {"id": "x", "file": "ngdlib/x.py", "original": "a = 2", "replacement": "a = 3"}
    assert "0 times" in run.apply_mutant(m, tmp_path)
    m2 = {**m, "original": "a = 1", "replacement": "a = ("}
    assert "does not compile" in run.apply_mutant(m2, tmp_path)


def test_score_file_matches_catalogue():
    path = ROOT / "tests" / "mutants" / "score.json"
    if not path.is_file():
        pytest.skip("no score.json yet (run make test-mutants)")
    score = json.loads(path.read_text())
    ids = {m["id"] for m in CAT["mutants"]}
    assert set(score["mutants"]) <= ids
    for r in score["mutants"].values():
        assert r["outcome"] in ("killed", "survived", "error")
