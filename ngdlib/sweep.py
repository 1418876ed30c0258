"""Sweeps over seeds, scales and devices: ``python -m ngdlib.sweep`` (and ``make sweep``).

A sweep is a grid of cells (notebook, SEED, SCALE, DEVICE). Each cell is one execution of a check notebook by
`papermill <https://papermill.readthedocs.io>`_ (the parameters are injected the standard papermill way: a cell
tagged ``injected-parameters`` right after the cell tagged ``parameters``), run in the notebook's own folder, as a
task on a `Dask <https://distributed.dask.org>`_ cluster:

- by default a ``distributed.LocalCluster`` with one single-threaded worker process per core (``--workers N`` to
  change it), ``OMP_NUM_THREADS=MKL_NUM_THREADS=1`` in every worker and notebook kernel;
- ``--scheduler ADDRESS``: an existing cluster, e.g. one started by ``dask-jobqueue`` on a SLURM machine (see the
  book's "Running the book"). Its workers must see this checkout at the same path (a shared file system) and have
  the same environment.

Everything a sweep writes lies under ``_build/sweeps/NAME/`` (``--out`` to change it):

- ``cells/<cell>.ipynb``: the executed notebook of each cell (outputs and, for a failed cell, the traceback);
- ``records/<cell>/attempt-<k>/``: the ``ngdlib.record`` JSON files of attempt ``k`` (``$NGDLIB_RECORDS`` of the
  kernel; one folder per attempt, so a killed attempt's kernel can never mix its records into the retry);
- ``attempts/<key>/``: one marker file per attempt of a cell (how a retry after a dead worker is detected);
- ``results.jsonl``: one JSON line per finished cell (the table; appended by the driver only, as cells finish);
- ``summary.txt``: the summary printed at the end.

Parameters. ``SEED`` is always injected. ``SCALE`` and ``DEVICE`` are injected only into notebooks whose parameters
cell defines them (papermill would otherwise add a variable that nothing reads, and the row would claim a scale or
device the notebook never used); the row's ``parameters`` field says what was injected. ``--scale ci`` (default)
injects nothing (the notebooks' defaults are the CI scale); ``--scale paper`` injects ``SCALE = "paper"`` into every
notebook that picks its sizes from ``SIZES`` by ``SCALE`` (running.md), and :data:`PAPER_PARAMETERS` into the notebooks
listed there; ``--scale <number>`` injects ``SCALE = <number>`` where a notebook's ``SCALE`` is a multiplier (no
``SIZES``).

Never lost, never counted twice. A cell is keyed by a hash of the notebook's content, the library's source
(``ngdlib/**/*.py``) and the cell's parameters. A task whose worker dies is rescheduled by Dask's scheduler (and a
task that raises, e.g. a dead kernel, is retried: ``retries=``); each attempt leaves a marker, so the row says which
attempt finished and that earlier ones were lost. Assertion failures are results, not errors: the row says
``failed`` with the assert's message, and is not retried. A rerun of the same sweep skips every cell whose key
already has a ``passed`` or ``failed`` row (a cell that ended in an infrastructure ``error`` is tried again), and the
summary reads the latest row of each key of the current grid only.

The summary: per check (the notebook's ``check-<ID>`` label) the pass rate over the seeds with a Wilson 95%
interval, the distribution of each recorded claim's slack, and every failing cell with a one-line command that reruns
it locally.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path

__all__ = ["main", "run_sweep", "run_cell", "plan", "find_notebooks", "parse_seeds", "load_results", "latest_rows",
           "summarise", "format_summary", "wilson", "library_hash", "PAPER_PARAMETERS", "DONE"]

#: ``--scale paper``: a notebook that follows the convention of running.md (a parameters cell with ``SCALE = "ci"``
#: and ``SIZES`` keyed by it) gets ``SCALE = "paper"``; the notebooks listed here name their paper scale otherwise
#: (run them with ``--device cuda``). Other notebooks have no larger scale and run at their defaults.
PAPER_PARAMETERS = {
    "z-f1-check": {"SCALE": "paper"},     # the paper's widths 100 and 6000
}

#: Row statuses that make a cell done (a rerun skips it). ``error`` (the cell could not be executed) is retried.
DONE = ("passed", "failed")

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ------------------------------------------------------------------------------------------------ the grid
def find_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder at or above ``start`` (default: the working directory) with _config.yml.

    Raises:
        ValueError: when no _config.yml lies at or above ``start`` (the sweep must run inside the book's checkout).
    """
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "_config.yml").exists():
            return p
    raise ValueError(f"no _config.yml at or above {here}: run the sweep from inside the book's checkout")


def parse_seeds(spec: str) -> list[int]:
    """``"5,6"``, ``"0-49"`` or a mix (``"0-4,11"``) -> a sorted list of distinct seeds.

    Raises:
        ValueError: when the spec holds no seeds, an empty range, or something that is not an int or a range.
    """
    seeds = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise ValueError(f"seed range {part!r} is empty (the end is below the start)")
            seeds.update(range(lo, hi + 1))
        elif re.fullmatch(r"-?\d+", part):
            seeds.add(int(part))
        else:
            raise ValueError(f"seeds must be integers or ranges such as 0-49, separated by commas; got {part!r}")
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}")
    return sorted(seeds)


def _check_id(text: str) -> str | None:
    m = re.search(r"\(check-([A-Za-z0-9_.-]+)\)=", text)
    return m[1] if m else None


def find_notebooks(root: Path, specs: list[str] | None = None) -> list[Path]:
    """The notebooks of a sweep: paths, or claim IDs (``Z-T4``: the notebook labelled ``check-Z-T4``, or named
    ``z-t4-check.ipynb``); every ``chapters/**/*-check.ipynb`` when ``specs`` is empty.

    Raises:
        ValueError: when a spec is neither a notebook path nor a claim ID with a check notebook.
    """
    all_nbs = sorted(p for p in (root / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not specs:
        return all_nbs
    out = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        path = Path(spec)
        for cand in (path, root / path):
            if cand.suffix == ".ipynb" and cand.is_file():
                out.append(cand.resolve())
                break
        else:
            want = spec.lower()
            hits = [p for p in all_nbs if p.name.lower() == f"{want}-check.ipynb"
                    or (_check_id(p.read_text()) or "").lower() == want]
            if not hits:
                raise ValueError(f"--notebooks: {spec!r} is neither a notebook path nor a claim ID with a check "
                                 f"notebook (label check-{spec} or a file {want}-check.ipynb under chapters/)")
            out.extend(hits)
    return sorted(dict.fromkeys(out))


def parameter_names(nb_path: Path) -> set[str]:
    """The names assigned in the notebook's cell tagged ``parameters`` (``A, B = 1, 2`` gives both).

    Raises:
        ValueError: when the notebook does not have exactly one cell tagged 'parameters' (papermill needs one).
    """
    nb = json.loads(Path(nb_path).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{nb_path}: papermill needs exactly one cell tagged 'parameters', found {len(cells)}")
    names = set()
    for node in ast.walk(ast.parse("".join(cells[0]["source"]))):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def code_hash(nb) -> str:
    """sha256 (first 16 hex digits) of a notebook's code: the sources of its code cells, in order, without the cell
    papermill injects (tagged ``injected-parameters``). Markdown and outputs do not enter: a prose edit cannot change
    what a notebook asserts, so it must not make a sweep's evidence look stale (the robustness page compares it).

    Args:
        nb: a notebook path, or a notebook as a dict (nbformat JSON).

    >>> code_hash({"cells": [{"cell_type": "markdown", "source": "x"}, {"cell_type": "code", "source": "1 + 1",
    ...                                                                  "metadata": {}}]})
    '4e2273679c3383d7'
    """
    if not isinstance(nb, dict):
        nb = json.loads(Path(nb).read_text())
    h = hashlib.sha256()
    for c in nb.get("cells", []):
        if c.get("cell_type") != "code" or "injected-parameters" in c.get("metadata", {}).get("tags", []):
            continue
        src = c.get("source", "")
        h.update(("".join(src) if isinstance(src, list) else src).encode() + b"\0")
    return h.hexdigest()[:16]


def library_hash(root: Path) -> str:
    """sha256 over the library's source: every ``ngdlib/**/*.py`` (relative path and bytes, in sorted order) except
    this runner itself, which executes notebooks but computes nothing in them."""
    h = hashlib.sha256()
    for p in sorted((root / "ngdlib").rglob("*.py")):
        if p.resolve() == Path(__file__).resolve():
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _scale_parameters(stem: str, names: set[str], scale: str) -> dict:
    if scale == "ci":
        return {}
    if scale == "paper":
        if stem not in PAPER_PARAMETERS and {"SCALE", "SIZES"} <= names:
            return {"SCALE": "paper"}
        return {k: v for k, v in PAPER_PARAMETERS.get(stem, {}).items() if k in names}
    try:
        value = float(scale)
    except ValueError:
        raise ValueError(f"--scale must be 'ci', 'paper' or a number, got {scale!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--scale must be a positive number, got {scale!r}")
    # a numeric SCALE only where SCALE is a multiplier (a notebook with SIZES picks them by the name "ci"/"paper")
    return {"SCALE": int(value) if value.is_integer() else value} if "SCALE" in names and "SIZES" not in names else {}


def cell_name(rel: str, seed: int, scale: str, device: str) -> str:
    stem = rel[:-len(".ipynb")] if rel.endswith(".ipynb") else rel
    return f"{stem.replace('/', '.')}-seed{seed}-{scale}-{device}"


def plan(root: Path, notebooks: list[Path], seeds: list[int], scale: str = "ci", device: str = "cpu",
         extra: dict | None = None) -> list[dict]:
    """The grid: one spec per (notebook, seed), with the injected parameters and the cell's key, seed by seed.

    ``extra``: further parameters (``--param NAME=VALUE``), injected into the notebooks that define them.

    Raises:
        ValueError: when the device is not 'cpu' or 'cuda' (or the notebooks' parameters cells are malformed).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    lib = library_hash(root)
    cells = []
    for nb in notebooks:
        nb = Path(nb).resolve()
        rel = nb.relative_to(root).as_posix() if nb.is_relative_to(root) else nb.as_posix()
        text = nb.read_bytes()
        names = parameter_names(nb)
        code = code_hash(nb)
        stem = nb.stem
        fixed = {**_scale_parameters(stem, names, scale),
                 **{k: v for k, v in (extra or {}).items() if k in names}}
        for seed in seeds:
            params = {"SEED": seed, **fixed}
            if "DEVICE" in names:
                params["DEVICE"] = device
            ident = {"notebook": hashlib.sha256(text).hexdigest(), "library": lib, "parameters": params,
                     "scale": scale, "device": device}
            key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
            cells.append({"key": key, "notebook": rel, "path": str(nb), "check": _check_id(text.decode()) or stem,
                          "seed": seed, "scale": scale, "device": device, "parameters": params,
                          "name": cell_name(rel, seed, scale, device), "notebook_sha": ident["notebook"][:16],
                          "code_sha": code, "library_sha": lib[:16]})
    # seed-major: a sweep stopped early has whole seeds done (every notebook), not whole notebooks
    return sorted(cells, key=lambda c: (c["seed"], c["notebook"]))


# ------------------------------------------------------------------------------------------------ one cell (on a worker)
def _engine():
    """papermill's nbclient engine, except that the kernel starts with an environment of our choosing (its own
    ``NGDLIB_RECORDS``): setting ``os.environ`` in a worker would race between threads of a multi-threaded worker."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class KernelEnvEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                     start_timeout=60, execution_timeout=None, kernel_env=None, **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logger, log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            return PapermillNotebookClient(nb_man, **final).execute(env=kernel_env)

    papermill_engines.register("ngdlib-sweep", KernelEnvEngine)
    return "ngdlib-sweep"


def _environment() -> dict:
    from .records import environment
    return environment()


def run_cell(spec: dict, out: str, timeout: float | None = 1800) -> dict:
    """Execute one cell with papermill and return its row (runs on a Dask worker; needs papermill there).

    An assert that fails is a result (``status: failed`` with the message); anything that keeps the notebook from
    running (a dead kernel, a timeout) raises, so that Dask retries the task.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = Path(out)
    marks = out / "attempts" / spec["key"]
    marks.mkdir(parents=True, exist_ok=True)
    earlier = sorted(p.name for p in marks.iterdir())
    attempt = len(earlier) + 1
    host, pid = socket.gethostname(), os.getpid()
    try:
        from distributed import get_worker
        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    started = _dt.datetime.now(_dt.timezone.utc)
    (marks / f"attempt-{attempt}").write_text(json.dumps({"host": host, "pid": pid, "worker": worker,
                                                           "started": started.isoformat(timespec="seconds")}))
    records = out / "records" / spec["name"] / f"attempt-{attempt}"
    records.mkdir(parents=True, exist_ok=True)
    output = out / "cells" / f"{spec['name']}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NGDLIB_RECORDS=str(records), PYTHONHASHSEED="0", MPLBACKEND="Agg")
    for var in _THREAD_VARS:
        env.setdefault(var, "1")
    status, message, failed_cell = "passed", "", None
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(spec["path"], str(output), parameters=spec["parameters"], engine_name=_engine(),
                            kernel_name="python3", progress_bar=False, log_output=False, cwd=str(Path(spec["path"]).parent),
                            execution_timeout=timeout, kernel_env=env)
    except PapermillExecutionError as e:
        status = "failed"
        message = f"{e.ename}: {e.evalue}".strip()
        failed_cell = e.exec_count
    wall = time.perf_counter() - t0
    recs = []
    for p in sorted(records.glob("*.json")):
        r = json.loads(p.read_text())
        recs.append({k: r.get(k) for k in ("claim", "status", "slack", "slack_meaning", "summary", "environment")})
    env_info = recs[0]["environment"] if recs else {**_environment(), "source": "worker"}
    for r in recs:
        r.pop("environment", None)
    if status == "passed" and not recs and "ngdlib.record(" in Path(spec["path"]).read_text():
        status, message = "failed", "the notebook ran to the end but recorded no claim (ngdlib.record)"
    return {
        "key": spec["key"], "notebook": spec["notebook"], "check": spec["check"], "seed": spec["seed"],
        "scale": spec["scale"], "device": spec["device"], "parameters": spec["parameters"], "status": status,
        "message": message[:500], "failed_cell": failed_cell, "wall_s": round(wall, 2), "attempt": attempt,
        "retried": attempt > 1, "lost_attempts": [json.loads((marks / e).read_text()) for e in earlier],
        "worker": worker, "host": host, "pid": pid, "started": started.isoformat(timespec="seconds"),
        "records": recs, "environment": env_info, "executed_notebook": output.relative_to(out).as_posix(),
        "notebook_sha": spec["notebook_sha"], "code_sha": spec.get("code_sha"), "library_sha": spec["library_sha"],
    }


# ------------------------------------------------------------------------------------------------ the table
def load_results(path: Path) -> list[dict]:
    """Every row of a results table (JSON lines); a torn last line (the driver was killed mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def latest_rows(rows: list[dict], keys=None) -> dict[str, dict]:
    """The latest row of each key (restricted to ``keys`` when given): what the summary counts, once per cell."""
    out = {}
    for r in rows:
        if keys is None or r["key"] in keys:
            out[r["key"]] = r
    return out


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (95% by default); (0, 1) when n = 0.

    >>> [round(x, 3) for x in wilson(50, 50)]
    [0.929, 1.0]
    >>> [round(x, 3) for x in wilson(0, 5)]
    [0.0, 0.434]

    Raises:
        ValueError: unless 0 <= k <= n.
    """
    if n < 0 or not (0 <= k <= n):
        raise ValueError(f"wilson needs 0 <= k <= n, got k = {k}, n = {n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rerun_command(row: dict) -> str:
    """One line that reruns a cell locally with papermill, in the notebook's folder, records to a scratch folder."""
    nb = row["notebook"]
    params = " ".join(f"-p {k} {shlex.quote(str(v))}" for k, v in row["parameters"].items())
    out = f"/tmp/{cell_name(nb, row['seed'], row['scale'], row['device']).replace('/', '.')}.ipynb"
    return (f"NGDLIB_RECORDS=/tmp/ngdlib-rerun .venv/bin/python -m papermill {shlex.quote(nb)} {out} "
            f"--cwd {shlex.quote(str(Path(nb).parent))} {params}")


def summarise(rows) -> dict:
    """Per check: cells, passes, the pass rate with its Wilson 95% interval, the recorded claims with their slacks
    over the passing seeds; and the failing cells (status ``failed`` or ``error``) in order."""
    rows = list(rows.values()) if isinstance(rows, dict) else list(rows)
    checks = {}
    for r in sorted(rows, key=lambda r: (r["notebook"], r["scale"], r["device"], r["seed"])):
        c = checks.setdefault(r["check"], {"check": r["check"], "notebook": r["notebook"], "cells": 0, "passed": 0,
                                           "failed_seeds": [], "wall_s": [], "claims": {}})
        c["cells"] += 1
        if r.get("wall_s") is not None:
            c["wall_s"].append(r["wall_s"])
        if r["status"] == "passed":
            c["passed"] += 1
        else:
            c["failed_seeds"].append(r["seed"])
        for rec in r.get("records", []):
            cl = c["claims"].setdefault(rec["claim"], {"status": rec["status"], "slack_meaning": rec["slack_meaning"],
                                                       "slack": []})
            if rec.get("slack") is not None:
                cl["slack"].append((r["seed"], rec["slack"]))
    for c in checks.values():
        c["rate"] = c["passed"] / c["cells"]
        c["interval"] = wilson(c["passed"], c["cells"])
    failing = [r for r in sorted(rows, key=lambda r: (r["notebook"], r["seed"])) if r["status"] != "passed"]
    return {"checks": checks, "failing": failing, "cells": len(rows),
            "passed": sum(r["status"] == "passed" for r in rows),
            "retried": [r for r in rows if r.get("attempt", 1) > 1]}


def format_summary(s: dict) -> str:
    """The summary of :func:`summarise` as printable text: per check the pass rate with its Wilson interval, the
    median wall time and the slack's range, then the retried and the failing cells (each with a rerun command)."""
    lines = [f"{s['passed']} of {s['cells']} cells passed.", "",
             f"{'check':<12} {'passed':>8} {'rate':>6}  {'95% interval':<15} {'wall s (median)':>15}  slack over "
             "passing seeds (claim: median [min, max])"]
    for c in s["checks"].values():
        lo, hi = c["interval"]
        med = _median(c["wall_s"]) if c["wall_s"] else float("nan")
        sl = "; ".join(
            f"{cid}: {_median([v for _, v in cl['slack']]):.3g} [{min(v for _, v in cl['slack']):.3g}, "
            f"{max(v for _, v in cl['slack']):.3g}]" if cl["slack"] else f"{cid}: no slack"
            for cid, cl in c["claims"].items())
        lines.append(f"{c['check']:<12} {c['passed']:>3}/{c['cells']:<4} {c['rate']:>6.2f}  [{lo:.2f}, {hi:.2f}]"
                     f"{'':<3} {med:>15.1f}  {sl}")
    if s["retried"]:
        lines += ["", "Cells retried after a lost attempt (a dead worker or a raised task):"]
        lines += [f"  {r['notebook']} SEED={r['seed']}: finished on attempt {r['attempt']}; lost: "
                  + ", ".join(f"{a.get('worker')} pid {a.get('pid')} started {a.get('started')}"
                              for a in r.get("lost_attempts", [])) for r in s["retried"]]
    if s["failing"]:
        lines += ["", "Failing cells (rerun one locally with the command below it):"]
        for r in s["failing"]:
            lines.append(f"  {r['notebook']} SEED={r['seed']} scale={r['scale']} device={r['device']}: "
                         f"{r['status']}: {r['message'].splitlines()[0] if r['message'] else ''}"[:300])
            lines.append(f"    {rerun_command(r)}")
    return "\n".join(lines)


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


EXPORT_FIELDS = ("notebook", "check", "seed", "scale", "device", "parameters", "status", "message", "wall_s",
                 "attempt", "records", "environment", "notebook_sha", "code_sha", "library_sha", "key")


def export(rows: dict, path: Path) -> None:
    """Write the latest row of each cell, sorted, with the machine-specific fields dropped (the committed table)."""
    with open(path, "w") as f:
        for r in sorted(rows.values(), key=lambda r: (r["notebook"], r["scale"], r["device"], r["seed"])):
            row = {k: r.get(k) for k in EXPORT_FIELDS}
            row["records"] = [{k: v for k, v in rec.items() if k != "summary"} for rec in row["records"] or []]
            f.write(json.dumps(row, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------------ the driver
def make_client(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: on ``scheduler`` if given, else on a new LocalCluster with ``workers`` single-threaded worker
    processes (default: one per core). Returns (client, cluster or None).

    Raises:
        ValueError: when the number of workers is below 1.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    n = workers if workers is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"--workers must be at least 1, got {n}")
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={v: "1" for v in _THREAD_VARS})
    return Client(cluster), cluster


def same_version(row: dict, notebook_sha: str | None, code_sha: str | None) -> bool:
    """Whether a result row ran this version of its notebook: the same ``notebook_sha`` (the whole file), or, when the
    row has one, the same ``code_sha`` (:func:`code_hash`: only the code cells). The one rule for "same notebook" of
    :func:`skipped_by` and of the robustness page; the library may differ.

    >>> same_version({"notebook_sha": "s", "code_sha": "c"}, "t", "c"), same_version({"notebook_sha": "s"}, "t", None)
    (True, False)
    """
    return row.get("notebook_sha") == notebook_sha or (bool(row.get("code_sha")) and row.get("code_sha") == code_sha)


def skipped_by(cells, rows) -> set:
    """The keys of the ``cells`` that ``rows`` record as passed for the same notebook version: same notebook, seed,
    scale and device, and :func:`same_version`.

    >>> c = {"key": "k1", "notebook": "a.ipynb", "seed": 3, "scale": "ci", "device": "cpu", "notebook_sha": "s"}
    >>> r = {"notebook": "a.ipynb", "seed": 3, "scale": "ci", "device": "cpu", "notebook_sha": "s", "status": "passed"}
    >>> skipped_by([c], [r]), skipped_by([c], [dict(r, notebook_sha="t")]), skipped_by([c], [dict(r, status="failed")])
    ({'k1'}, set(), set())
    """
    passed = {}
    for r in rows:
        if r.get("status") == "passed":
            passed.setdefault((r["notebook"], r["seed"], r["scale"], r["device"]), []).append(r)
    return {c["key"] for c in cells
            if any(same_version(r, c["notebook_sha"], c.get("code_sha"))
                   for r in passed.get((c["notebook"], c["seed"], c["scale"], c["device"]), ()))}


def run_sweep(name: str, notebooks=None, seeds=(0,), scale: str = "ci", device: str = "cpu", workers=None,
              scheduler=None, out=None, root=None, retries: int = 2, timeout: float | None = 1800, client=None,
              progress: bool = True, echo=print, parameters: dict | None = None, skip_rows=None) -> dict:
    """Run (or resume) a sweep; return ``{"todo", "ran", "rows", "summary", "out"}``.

    ``client``: an existing ``distributed.Client`` (the tests pass one); otherwise one is made by
    :func:`make_client` only when some cell is left to run, and closed at the end.

    ``skip_rows``: rows of another table (e.g. the committed export, ``--skip-table``); a cell is not run when they
    record it as passed for the same notebook version (same notebook, seed, scale, device and notebook or code hash,
    whatever the library): :func:`skipped_by` says which. Failed cells are run again.

    Raises:
        ValueError: when the name is not a plain folder name or retries is negative (and as :func:`parse_seeds`,
            :func:`find_notebooks`, :func:`plan`).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        raise ValueError(f"--name must be a plain folder name (letters, digits, '_', '.', '-'), got {name!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    root = Path(root).resolve() if root else find_root()
    out = Path(out).resolve() if out else root / "_build" / "sweeps" / name
    out.mkdir(parents=True, exist_ok=True)
    cells = plan(root, find_notebooks(root, notebooks), list(seeds), scale, device, parameters)
    table = out / "results.jsonl"
    keys = {c["key"] for c in cells}
    done = {k for k, r in latest_rows(load_results(table), keys).items() if r["status"] in DONE}
    todo = [c for c in cells if c["key"] not in done]
    skipped = skipped_by(todo, skip_rows or [])
    todo = [c for c in todo if c["key"] not in skipped]
    cells = [c for c in cells if c["key"] not in skipped]
    keys = {c["key"] for c in cells}
    echo(f"sweep {name}: {len(cells)} cells ({len(cells) - len(todo)} already done, {len(todo)} to run"
         + (f"; {len(skipped)} passed in the skip table, not run" if skip_rows else "") + f") -> {out}")
    ran = 0
    t0 = time.perf_counter()
    if todo:
        from distributed import as_completed

        own = client is None
        cluster = None
        if own:
            client, cluster = make_client(workers, scheduler)
        try:
            futures = {client.submit(run_cell, c, str(out), timeout, key=f"ngdlib-sweep-{c['key']}", retries=retries,
                                     pure=False): c for c in todo}
            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(futures), desc=f"sweep {name}", unit="cell", file=sys.stderr)
            for fut in as_completed(futures):
                # forget the future once it is recorded: a result held in a dead worker's memory would otherwise be
                # recomputed by the scheduler (a finished cell run again)
                c = futures.pop(fut)
                try:
                    row = fut.result()
                except Exception as e:  # noqa: BLE001 - any failure to run the cell is recorded as an error row
                    row = {**{k: c[k] for k in ("key", "notebook", "check", "seed", "scale", "device", "parameters",
                                                "notebook_sha", "library_sha")},
                           "status": "error", "message": f"{type(e).__name__}: {e}"[:500], "failed_cell": None,
                           "wall_s": None, "attempt": None, "records": [], "environment": {}}
                fut.release()
                row["sweep"] = name
                _append(table, row)
                ran += 1
                if bar is not None:
                    bar.set_postfix_str(f"{c['check']} seed {c['seed']}: {row['status']}")
                    bar.update()
            if bar is not None:
                bar.close()
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    rows = latest_rows(load_results(table), keys)
    summary = summarise(rows)
    text = format_summary(summary)
    text = f"{text}\n\nSweep wall time this run: {time.perf_counter() - t0:.1f} s for {ran} cells."
    (out / "summary.txt").write_text(text + "\n")
    echo(text)
    return {"todo": len(todo), "ran": ran, "rows": rows, "summary": summary, "out": out}


def main(argv=None) -> int:
    """Command-line entry point (``python -m ngdlib.sweep``); returns 1 if any cell failed, else 0."""
    ap = argparse.ArgumentParser(prog="python -m ngdlib.sweep", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="the sweep's name: its folder is _build/sweeps/NAME")
    ap.add_argument("--notebooks", default="", help="comma-separated notebook paths or claim IDs (default: all)")
    ap.add_argument("--seeds", default="0", help="seeds: 5,6 or 0-49 (default 0)")
    ap.add_argument("--scale", default="ci", help="ci (default), paper, or a number for SCALE")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: one per core)")
    where.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a further parameter (VALUE read as JSON, else a string), injected where the notebook's "
                         "parameters cell defines NAME; repeatable")
    ap.add_argument("--retries", type=int, default=2, help="Dask retries of a task that raised (default 2)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per notebook cell (default 1800)")
    ap.add_argument("--out", default=None, help="output folder (default _build/sweeps/NAME)")
    ap.add_argument("--export", default=None, metavar="FILE",
                    help="also write the table (latest row per cell, sorted, no machine-specific fields) to FILE")
    ap.add_argument("--skip-table", default=None, metavar="FILE",
                    help="a table (JSON lines, e.g. the committed export): cells it records as passed for the same "
                         "notebook version are not run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    extra = {}
    for item in a.param:
        k, sep, v = item.partition("=")
        if not sep or not k.isidentifier():
            ap.error(f"--param takes NAME=VALUE, got {item!r}")
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    res = run_sweep(a.name, [s for s in a.notebooks.split(",") if s.strip()], parse_seeds(a.seeds), a.scale,
                    a.device, a.workers, a.scheduler, a.out, retries=a.retries, timeout=a.timeout,
                    progress=not a.no_progress, parameters=extra,
                    skip_rows=load_results(Path(a.skip_table)) if a.skip_table else None)
    if a.export:
        export(res["rows"], Path(a.export))
        print(f"table written to {a.export}")
    return 0 if res["summary"]["passed"] == res["summary"]["cells"] else 1


if __name__ == "__main__":
    sys.exit(main())
