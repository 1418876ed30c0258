"""House rules for the book's notebooks and pages (cheap, static checks)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
PAGES = sorted((ROOT / "chapters").rglob("*.md"))
TOC = (ROOT / "_toc.yml").read_text()


def _code(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_rules(path):
    nb = json.loads(path.read_text())
    code = _code(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored with outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell must be tagged 'parameters'"
    assert re.search(r"^SEED\s*=", "".join(params[0]["source"]), re.M), "the parameters cell must set SEED"
    assert code.index(params[0]) == 0, "the parameters cell must be the first code cell"
    src = "\n".join("".join(c["source"]) for c in code)
    assert re.search(r"^\s*assert\s", src, re.M), "a notebook without an assert checks nothing"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "sys.path" not in src, "notebooks import ngdlib as an installed package"


@pytest.mark.parametrize("path", NOTEBOOKS + PAGES, ids=[p.name for p in NOTEBOOKS + PAGES])
def test_listed_in_toc(path):
    stem = path.relative_to(ROOT).with_suffix("").as_posix()
    assert re.search(rf"file:\s*{re.escape(stem)}\s*$", TOC, re.M), f"{stem} is not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS + PAGES, ids=[p.name for p in NOTEBOOKS + PAGES])
def test_title_has_no_math(path):
    """A page title is reused as plain text in the navigation and in every {doc} link to the page, where TeX is not
    typeset (the browser test found raw \\lambda_0 there): titles use Unicode (λ₀, η) instead of $...$."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text()
    title = next((line for line in text.splitlines() if line.startswith("# ")), "")
    assert "$" not in title, f"math in the page title: {title!r}"


CLAIMS = [c["id"] for c in __import__("yaml").safe_load((ROOT / "claims.yml").read_text())]
PAGE_TEXT = {p: p.read_text() for p in PAGES}
NB_TEXT = {p: p.read_text() for p in NOTEBOOKS}


@pytest.mark.parametrize("cid", CLAIMS)
def test_claim_box_and_check_link_both_ways(cid):
    """Every claim of the catalogue has a box labelled claim-<ID> that links to its check, and a notebook cell
    labelled check-<ID> that links back to the box."""
    boxes = [re.search(rf"```+\{{prf:[a-z]+\}}[^\n]*\n(?:(?!```).*\n)*?:label: claim-{re.escape(cid)}\s*\n(?:(?!```).*\n)*?```",
                       text) for text in PAGE_TEXT.values()]
    boxes = [b for b in boxes if b]
    assert len(boxes) == 1, f"claim-{cid}: expected one box, found {len(boxes)}"
    assert f"check-{cid}`" in boxes[0].group(0), f"the claim-{cid} box does not link to check-{cid}"
    nbs = [t for t in NB_TEXT.values() if f"(check-{cid})=" in t]
    assert len(nbs) == 1, f"check-{cid}: expected one notebook label, found {len(nbs)}"
    assert f"claim-{cid}`" in nbs[0], f"the check-{cid} notebook does not link back to claim-{cid}"


PROVENANCE = {c["id"]: c.get("provenance") for c in __import__("yaml").safe_load((ROOT / "claims.yml").read_text())}


@pytest.mark.parametrize("cid", CLAIMS)
def test_claim_box_says_whose_statement_it_is(cid):
    """Every claim box carries a '**Whose statement.**' line, and claims.yml says whose it is in one of four words."""
    assert PROVENANCE[cid] in ("quoted", "recalled", "reconstructed", "book"), f"{cid}: provenance {PROVENANCE[cid]!r}"
    box = next(m.group(0) for m in (re.search(
        rf"```+\{{prf:[a-z]+\}}[^\n]*\n(?:(?!```).*\n)*?:label: claim-{re.escape(cid)}\s*\n(?:(?!```).*\n)*?```", t)
        for t in PAGE_TEXT.values()) if m)
    assert "**Whose statement.**" in box, f"the claim-{cid} box does not say whose statement it is"
