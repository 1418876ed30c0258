"""Mutation testing of ``ngdlib`` against the notebooks and tests (``make test-mutants``).

Each mutant of ``tests/mutants/catalogue.yml`` is one plausible mistake an author could make in ``ngdlib`` (a wrong
normalisation, a dropped step size, a constant off by one layer, ...). For every mutant this runner

1. copies the parts of the repository that the checks need (``ngdlib/``, ``chapters/``, ``tests/``, ``claims.yml``,
   ``_config.yml``, ``_toc.yml``, ``pyproject.toml``) into a fresh temporary folder; the working tree is never
   touched;
2. replaces the catalogue's ``original`` snippet by its ``replacement`` in the copy (the snippet must occur exactly
   once, and the mutated file must still compile; otherwise the mutant is an **error**, never a pass);
3. runs, with ``PYTHONPATH`` pointing at the copy (so the copy's ``ngdlib`` is imported, not the editable install of
   the working tree) and one BLAS thread per process: first the notebooks of the mutant's claims (pytest + nbval,
   lax: asserts decide), and only if they all pass, the unit tests of the mutated module and its doctests;
4. records **killed** (by a notebook, or only by a unit test), **survived** or **error**, the time, and the first
   failing test with its message.

Independent mutants run in parallel (``JOBS``, default 2: one per core). Selection: ``MUTANTS=id1,id2`` and/or
``CLAIMS=Z-T4,K-TRI`` (environment variables or ``--mutants`` / ``--claims``). Results are merged into
``tests/mutants/score.json`` (a partial run updates only its mutants); a summary is printed.

Run it from the repository root: ``python -m tests.mutants.run`` (``make test-mutants``).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CATALOGUE = HERE / "catalogue.yml"
SCORE = HERE / "score.json"
COPY_ITEMS = ["ngdlib", "chapters", "tests", "claims.yml", "_config.yml", "_toc.yml", "pyproject.toml"]
IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "_build", "*.egg-info", "score.json", "*.pyc")
ANSI_RE = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")
RECORD_RE = re.compile(r'record\(\\?"([A-Za-z0-9-]+)\\?"')


# --------------------------------------------------------------------------------------------------- catalogue
def load_catalogue(path: Path = CATALOGUE) -> dict:
    """The catalogue as a dict: ``module_tests`` (file -> unit tests) and ``mutants`` (list of entries)."""
    cat = yaml.safe_load(path.read_text())
    if not isinstance(cat, dict) or not isinstance(cat.get("mutants"), list):
        raise ValueError(f"{path}: expected a mapping with a 'mutants' list")
    ids = [m.get("id") for m in cat["mutants"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{path}: duplicate mutant ids {dup}")
    for m in cat["mutants"]:
        missing = [k for k in ("id", "claims", "file", "original", "replacement", "rationale") if not m.get(k)]
        if missing:
            raise ValueError(f"{path}: mutant {m.get('id')!r} lacks {missing}")
    return cat


def claim_notebooks(root: Path = ROOT) -> dict:
    """Claim ID -> the notebooks (paths relative to root) that record it, found by scanning for ``record("ID"``."""
    out: dict = {}
    for nb in sorted((root / "chapters").rglob("*-check.ipynb")):
        if ".ipynb_checkpoints" in nb.parts:
            continue
        for cid in RECORD_RE.findall(nb.read_text()):
            out.setdefault(cid, [])
            rel = nb.relative_to(root).as_posix()
            if rel not in out[cid]:
                out[cid].append(rel)
    return out


def targets(m: dict, cat: dict, nbs: dict) -> tuple[list, list]:
    """(notebooks, unit tests) a mutant is run against.

    Default: the notebooks that record its claims, plus ``module_tests[file]`` and the mutated file itself (its
    doctests). ``notebooks:`` / ``tests:`` in the entry replace the defaults; ``extra_notebooks:`` /
    ``extra_tests:`` add to them.
    """
    if "notebooks" in m:
        notebooks = list(m["notebooks"])
    else:
        notebooks = [p for c in m["claims"] for p in nbs.get(c, [])]
    notebooks += list(m.get("extra_notebooks", []))
    if "tests" in m:
        tests = list(m["tests"])
    else:
        tests = list(cat.get("module_tests", {}).get(m["file"], [])) + [m["file"]]
    tests += list(m.get("extra_tests", []))
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    return dedup(notebooks), dedup(tests)


def entry_hash(m: dict, cat: dict, nbs: dict) -> str:
    """A hash of what defines a mutant's result (file, snippets, targets): a changed entry makes its result stale."""
    nb, ts = targets(m, cat, nbs)
    blob = json.dumps([m["file"], m["original"], m["replacement"], nb, ts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- one mutant
def _make_copy(dest: Path) -> None:
    for item in COPY_ITEMS:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, dest / item)


def apply_mutant(m: dict, root: Path) -> str | None:
    """Apply the mutant in ``root`` (a copy). Returns None, or why it could not be applied (an error)."""
    path = root / m["file"]
    if not path.is_file():
        return f"file {m['file']} not found"
    src = path.read_text()
    count = src.count(m["original"])
    if count != 1:
        return f"original snippet found {count} times in {m['file']} (must be exactly once)"
    new = src.replace(m["original"], m["replacement"])
    if new == src:
        return "the replacement equals the original"
    try:
        compile(new, str(path), "exec")
    except SyntaxError as err:
        return f"the mutated file does not compile: {err}"
    path.write_text(new)
    return None


def _env(root: Path) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONHASHSEED="0", MPLBACKEND="Agg", NGDLIB_RECORDS=str(root / "_build" / "records"),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _check_import(root: Path) -> str | None:
    """None if ``import ngdlib`` in the copy's environment resolves to the copy (not the editable install)."""
    probe = "import importlib.util; print(importlib.util.find_spec('ngdlib').origin)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=_env(root), capture_output=True, text=True)
    origin = out.stdout.strip()
    if not origin or not Path(origin).resolve().is_relative_to(root.resolve()):
        return f"import ngdlib resolves to {origin or out.stderr.strip()[-200:]!r}, not to the mutated copy"
    return None


def _first_failure(xml_path: Path) -> tuple[str | None, str]:
    if not xml_path.is_file():
        return None, ""
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError:
        return None, ""
    for case in tree.iter("testcase"):
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
                msg = ANSI_RE.sub("", el.get("message") or el.text or "").strip()
                # nbval puts the whole traceback into the message: keep the assertion / exception line.
                lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
                key = [ln for ln in lines if re.search(r"(Error|Exception|assert)", ln)]
                return name, (key[-1] if key else (lines[-1] if lines else ""))[:300]
    return None, ""


def run_phase(root: Path, paths: list, name: str, timeout: float, deselect=(), stop_first: bool = True) -> dict:
    """pytest on ``paths`` in the copy; ``outcome`` is pass / fail / timeout / error.

    ``deselect``: node ids to leave out (tests that already fail without any mutant). ``failed`` lists the node ids
    that failed (from pytest's short summary)."""
    if not paths:
        return {"phase": name, "outcome": "pass", "seconds": 0.0, "paths": []}
    missing = [p for p in paths if not (root / p).exists()]
    if missing:
        return {"phase": name, "outcome": "error", "seconds": 0.0, "paths": paths,
                "message": f"targets not found: {missing}"}
    xml = root / f"_{name}.xml"
    cmd = [sys.executable, "-m", "pytest", *(["-x"] if stop_first else []), "-q", "-rfE", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *[a for d in deselect for a in ("--deselect", d)], *paths]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"phase": name, "outcome": "timeout", "seconds": round(time.monotonic() - t0, 1), "paths": paths,
                "message": f"no result within {timeout:.0f} s"}
    secs = round(time.monotonic() - t0, 1)
    res = {"phase": name, "seconds": secs, "paths": paths, "returncode": proc.returncode,
           "failed": re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)}
    if proc.returncode in (0, 5):          # 5: nothing collected (e.g. a module without doctests)
        res["outcome"] = "pass"
    elif proc.returncode in (1, 2):        # failures, or a collection error caused by the mutant
        res["outcome"] = "fail"
        res["first_failure"], res["message"] = _first_failure(xml)
        if res["first_failure"] is None:
            tail = (proc.stdout + proc.stderr).strip().splitlines()
            res["message"] = tail[-1][:300] if tail else ""
    else:
        res["outcome"] = "error"
        res["message"] = (proc.stdout + proc.stderr).strip()[-300:]
    return res


def run_mutant(m: dict, cat: dict, nbs: dict, timeout: float, keep: bool = False, deselect=()) -> dict:
    t0 = time.monotonic()
    notebooks, tests = targets(m, cat, nbs)
    base = {"id": m["id"], "claims": list(m["claims"]), "file": m["file"], "hash": entry_hash(m, cat, nbs),
            "notebooks": notebooks, "tests": tests}
    tmp = Path(tempfile.mkdtemp(prefix=f"mutant-{m['id']}-"))
    try:
        _make_copy(tmp)
        why = apply_mutant(m, tmp) or _check_import(tmp)
        if why:
            return {**base, "outcome": "error", "killed_by": None, "first_failure": None, "message": why,
                    "seconds": round(time.monotonic() - t0, 1)}
        phases = []
        outcome, killed_by, first, msg = "survived", None, None, ""
        for name, paths in (("notebooks", notebooks), ("tests", tests)):
            ph = run_phase(tmp, paths, name, timeout, deselect=deselect if name == "tests" else ())
            phases.append(ph)
            if ph["outcome"] in ("fail", "timeout"):
                outcome = "killed"
                killed_by = "notebook" if name == "notebooks" else "unit test"
                first = ph.get("first_failure") or (paths[0] if ph["outcome"] == "timeout" else None)
                msg = ph.get("message", "")
                if ph["outcome"] == "timeout":
                    msg = "timeout: " + msg
                break
            if ph["outcome"] == "error":
                outcome, msg = "error", ph.get("message", "")
                break
        return {**base, "outcome": outcome, "killed_by": killed_by, "first_failure": first, "message": msg,
                "seconds": round(time.monotonic() - t0, 1),
                "phases": [{k: v for k, v in p.items() if k not in ("paths", "failed")} for p in phases]}
    finally:
        if keep:
            print(f"  kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_baseline(paths: list, timeout: float, stop_first: bool = True) -> dict:
    """The unmutated copy on ``paths``: a mutant can only be killed by checks that pass without it."""
    tmp = Path(tempfile.mkdtemp(prefix="mutant-baseline-"))
    try:
        _make_copy(tmp)
        return run_phase(tmp, paths, "baseline", timeout, stop_first=stop_first)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- score
def summarise(cat: dict, results: dict, nbs: dict) -> dict:
    """Overall counts over the whole catalogue; a mutant without a current result counts as not run."""
    counts = {"killed": 0, "killed_by_notebook": 0, "survived": 0, "error": 0, "not run": 0}
    for m in cat["mutants"]:
        r = results.get(m["id"])
        if r is None or r.get("hash") != entry_hash(m, cat, nbs):
            counts["not run"] += 1
            continue
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        if r["outcome"] == "killed" and r.get("killed_by") == "notebook":
            counts["killed_by_notebook"] += 1
    total = len(cat["mutants"])
    return {"total": total, **counts, "score": round(counts["killed"] / total, 4) if total else None,
            "notebook_score": round(counts["killed_by_notebook"] / total, 4) if total else None}


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


_JOBS = [2]


def write_score(cat: dict, new: dict, nbs: dict, wall: float | None, deselected=(), path: Path = SCORE,
                finished: int | None = None) -> dict:
    """Merge ``new`` results into score.json. ``wall`` None: an intermediate write (no run entry is added)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    results = {k: v for k, v in old.get("mutants", {}).items()}
    results.update(new)
    ids = [m["id"] for m in cat["mutants"]]
    results = {i: results[i] for i in ids if i in results}      # catalogue order; drop removed mutants
    runs = old.get("runs", [])[-9:]
    if wall is not None:
        runs.append({"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                     "commit": _git_head(), "mutants": finished if finished is not None else len(new),
                     "wall_s": round(wall, 1), "jobs": _JOBS[0],
                     "deselected_baseline_failures": list(deselected)})
    score = {"summary": summarise(cat, results, nbs), "runs": runs, "mutants": results}
    path.write_text(json.dumps(score, indent=1) + "\n")
    return score


def select(cat: dict, ids: list, claims: list) -> list:
    known = {m["id"] for m in cat["mutants"]}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise SystemExit(f"unknown mutant ids: {unknown}")
    out = cat["mutants"]
    if ids:
        out = [m for m in out if m["id"] in ids]
    if claims:
        out = [m for m in out if set(m["claims"]) & set(claims)]
    return out


def _split(s: str | None) -> list:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", default=os.environ.get("MUTANTS", ""), help="comma-separated ids (env MUTANTS)")
    ap.add_argument("--claims", default=os.environ.get("CLAIMS", ""), help="comma-separated claim IDs (env CLAIMS)")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2")), help="parallel mutants (env JOBS)")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("MUTANT_TIMEOUT", "900")),
                    help="seconds per pytest phase; a timeout counts as killed (env MUTANT_TIMEOUT)")
    ap.add_argument("--baseline", action="store_true",
                    help="first run all selected targets (notebooks too) without any mutant; stop if one fails")
    ap.add_argument("--no-test-baseline", action="store_true",
                    help="skip the unmutated run of the unit tests (whose failures are otherwise deselected)")
    ap.add_argument("--list", action="store_true", help="list the selected mutants and their targets, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (for debugging)")
    ap.add_argument("--no-write", action="store_true", help="do not update score.json")
    args = ap.parse_args(argv)

    cat = load_catalogue()
    nbs = claim_notebooks()
    _JOBS[0] = args.jobs
    chosen = select(cat, _split(args.mutants), _split(args.claims))
    if args.list:
        for m in chosen:
            nb, ts = targets(m, cat, nbs)
            print(f"{m['id']:<28} {','.join(m['claims']):<16} {m['file']:<26} nb={nb} tests={ts}")
        return 0
    if args.baseline:
        paths = list(dict.fromkeys(p for m in chosen for p in sum(targets(m, cat, nbs), [])))
        print(f"baseline: {len(paths)} targets without a mutant ...", flush=True)
        b = run_baseline(paths, args.timeout * 4)
        print(f"baseline: {b['outcome']} in {b['seconds']} s {b.get('first_failure') or ''} {b.get('message', '')}")
        if b["outcome"] != "pass":
            print("the unmutated checks do not pass: mutation results would be meaningless", file=sys.stderr)
            return 1
    t0 = time.monotonic()
    deselect = []
    if not args.no_test_baseline:
        unit = list(dict.fromkeys(p for m in chosen for p in targets(m, cat, nbs)[1]))
        print(f"unit-test baseline: {len(unit)} targets without a mutant ...", flush=True)
        b = run_baseline(unit, args.timeout * 4, stop_first=False)
        deselect = b.get("failed", [])
        if b["outcome"] not in ("pass", "fail"):
            print(f"unit-test baseline: {b['outcome']} {b.get('message', '')}", file=sys.stderr)
            return 1
        print(f"unit-test baseline: {b['outcome']} in {b['seconds']} s; deselected (they fail without a mutant): "
              f"{deselect or 'none'}", flush=True)
    print(f"{len(chosen)} mutants, {args.jobs} at a time", flush=True)
    new = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_mutant, m, cat, nbs, args.timeout, args.keep, deselect): m for m in chosen}
        for fut in cf.as_completed(futs):
            m = futs[fut]
            try:
                r = fut.result()
            except Exception as err:  # noqa: BLE001 - a harness failure is recorded as an error, never a pass
                r = {"id": m["id"], "claims": list(m["claims"]), "file": m["file"], "outcome": "error",
                     "killed_by": None, "first_failure": None, "message": f"runner: {err!r}", "seconds": 0.0,
                     "hash": entry_hash(m, cat, nbs)}
            new[m["id"]] = r
            if not args.no_write:       # after every mutant, so an interrupted run keeps what it measured
                write_score(cat, {m["id"]: r}, nbs, None, deselect)
            by = f" by {r['killed_by']}" if r["killed_by"] else ""
            print(f"[{len(new):>3}/{len(chosen)}] {r['id']:<28} {r['outcome']}{by} ({r['seconds']} s) "
                  f"{r.get('first_failure') or ''} {r.get('message', '')[:120]}", flush=True)
    wall = time.monotonic() - t0
    if args.no_write:
        summary = summarise(cat, new, nbs)
    else:
        summary = write_score(cat, {}, nbs, wall, deselect, finished=len(new))["summary"]
    survivors = [r for r in new.values() if r["outcome"] != "killed"]
    print(f"\nwall time {wall:.0f} s for {len(new)} mutants")
    print("catalogue: {total} mutants; killed {killed} ({killed_by_notebook} by a notebook), survived {survived}, "
          "error {error}, not run {nr}; score {score}".format(nr=summary["not run"], **summary))
    for r in survivors:
        print(f"  {r['outcome']:<9} {r['id']:<28} {','.join(r['claims'])}  {r.get('message', '')[:100]}")
    return 1 if any(r["outcome"] == "error" for r in new.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
