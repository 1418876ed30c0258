"""What notebooks record when they run, for the verification dashboard.

A notebook calls :func:`record` once per claim after its asserts passed. Each call writes one JSON file
``<claim>.json`` into the records folder: ``$NGDLIB_RECORDS`` if set, else ``_build/records`` under the book's root
(the nearest folder above the working directory that holds ``_config.yml``). Outside a book checkout nothing is
written and ``None`` is returned.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

__all__ = ["record", "records_dir", "STATUSES", "environment", "paper_record", "SCALES"]

# What the check found about the statement (whose statement it is lives in claims.yml's `provenance`):
#   verified        - holds as stated
#   strengthened    - holds as printed, and the book checks a stronger form
#   corrected       - false or ill-posed as printed; a stated corrected form holds and is checked
#   refuted as printed - false as printed
#   unconfirmed at testable sizes - an asymptotic condition that fails at every size the book can test
#   open            - not decided
# ("reconstructed" was a status once; it is provenance now, in claims.yml.)
#: Every claim recorded by :func:`record` in this process, in order (``clock``: ``time.perf_counter()`` at the call),
#: for :func:`paper_record`.
_RECORDED: list[dict] = []

STATUSES = ("verified", "strengthened", "corrected", "refuted as printed", "unconfirmed at testable sizes", "open")


def records_dir() -> Path | None:
    """The folder records go to, or None outside a book checkout."""
    env = os.environ.get("NGDLIB_RECORDS")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "_config.yml").exists():
            return p / "_build" / "records"
    return None


def environment() -> dict:
    """Library versions, device and thread count, for provenance."""
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
    }


def _jsonable(v):
    if isinstance(v, (torch.dtype, torch.device)):
        return str(v)
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().tolist()
    return v


def record(claim: str, status: str, *, summary: str, slack: float | None = None, slack_meaning: str = "",
           **values) -> Path | None:
    """Record the outcome of one claim's check, and print one line of provenance (versions, device, seed).

    Refuses (``ValueError``) a NaN or Inf among the numbers, so that none can reach the dashboard.

    Args:
        claim: the claim ID, as listed in the book's ``claims.yml`` (e.g. ``"Z-NGD"``).
        status: one of :data:`STATUSES`.
        summary: one sentence with the measured numbers.
        slack: one number that measures how tight the claim is (e.g. bound / observed), if there is one.
        slack_meaning: what ``slack`` is, in words.
        **values: further JSON-serialisable numbers (seed, sizes, dtype, errors).

    Raises:
        ValueError: if claim is not a claim ID string, status is not one of :data:`STATUSES`, summary is not a
            string, or a recorded number is NaN or Inf (it must never reach the book).
    """
    if not (isinstance(claim, str) and claim.strip()):
        raise ValueError(f"claim must be a non-empty claim ID string such as 'Z-NGD', got {claim!r}")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if not isinstance(summary, str):
        raise ValueError(f"summary must be a string (one sentence with the measured numbers), got {summary!r}")
    for key, v in {"slack": slack, **values}.items():
        if isinstance(v, (float, int)) and not isinstance(v, bool) and not math.isfinite(v):
            raise ValueError(f"record({claim!r}): {key} = {v} is not finite; a NaN or Inf must never reach the book")
        if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all()):
            raise ValueError(f"record({claim!r}): {key} contains NaN or Inf; it must never reach the book")
    env = environment()
    print(f"[{claim}: {status}] recorded with Python {env['python']}, torch {env['torch']}, numpy {env['numpy']}, "
          f"{'GPU ' + env['cuda'] if env['cuda'] else 'CPU'} ({env['threads']} threads)"
          + "".join(f", {k} = {values[k]}" for k in ("seed", "dtype", "device") if k in values))
    _RECORDED.append({"claim": claim, "status": status, "summary": summary, "slack": slack,
                      "slack_meaning": slack_meaning, "values": {k: _jsonable(v) for k, v in values.items()},
                      "clock": time.perf_counter()})
    folder = records_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "claim": claim,
        "status": status,
        "summary": summary,
        "slack": slack,
        "slack_meaning": slack_meaning,
        "values": {k: _jsonable(v) for k, v in values.items()},
        "environment": env,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = folder / f"{claim}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


# ------------------------------------------------------------------------------------------ paper-scale records
#: The values of a notebook's ``SCALE`` parameter (running.md): ``"ci"``, the default sizes, and ``"paper"``.
SCALES = ("ci", "paper")


def _finite_tree(x, where):
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, (int, float)):
        if not math.isfinite(x):
            raise ValueError(f"paper_record: {where} = {x} is not finite; a NaN or Inf must never reach the book")
        return
    if isinstance(x, dict):
        for k, v in x.items():
            _finite_tree(v, f"{where}[{k!r}]")
        return
    if isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _finite_tree(v, f"{where}[{i}]")
        return
    raise ValueError(f"paper_record: {where} is a {type(x).__name__}; only numbers, strings, lists and dicts are "
                     "recorded (convert tensors with .tolist())")


def paper_record(path, *, scale: str, sizes: dict, device, started: float, results: dict | None = None) -> Path:
    """Write the record of a ``SCALE = "paper"`` run as JSON (running.md: committed beside the chapter).

    The record names where and when it ran: ``device`` (``"cpu"``/``"cuda"``), ``gpu`` (the CUDA device's name, else
    None), ``processor``, ``python``, ``torch``, ``numpy``, ``cuda`` (torch's CUDA version, else None), ``threads``,
    ``date`` (UTC, ``"YYYY-MM-DD HH:MM UTC"``) and ``seconds`` (wall time since ``started``); what it ran:
    ``scale`` and ``sizes``; and what decided the claims: ``claims``, every :func:`record` call made in this process
    since ``started`` (claim, status, summary, slack and its meaning, values), plus the notebook's own ``results``.

    Args:
        path: the JSON file to write (its folder must exist).
        scale: one of :data:`SCALES`: the ``SCALE`` the notebook ran at.
        sizes: the sizes the notebook ran with (``SIZES[SCALE]``): numbers, strings, lists, dicts.
        device: the device the notebook ran on (a string or ``torch.device``).
        started: ``time.perf_counter()`` read when the run began (before its first measurement).
        results: further numbers that decided the claim (optional, JSON-serialisable, finite).

    Returns:
        The path written.

    Raises:
        ValueError: for an unknown scale, sizes that are not a non-empty dict, a device torch does not know, a
            ``started`` that is not an earlier ``perf_counter()`` reading, a non-finite number, or a run that
            recorded no claim and no result (a paper run must have decided something).
    """
    if scale not in SCALES:
        raise ValueError(f"paper_record: scale must be one of {SCALES}, got {scale!r}")
    if not (isinstance(sizes, dict) and sizes):
        raise ValueError(f"paper_record: sizes must be a non-empty dict (SIZES[SCALE]), got {sizes!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"paper_record: device {device!r} is not a torch device ({e})") from None
    now = time.perf_counter()
    if not (isinstance(started, (int, float)) and not isinstance(started, bool) and math.isfinite(started)
            and started <= now):
        raise ValueError(f"paper_record: started must be an earlier time.perf_counter() reading, got {started!r}")
    results = {} if results is None else results
    if not isinstance(results, dict):
        raise ValueError(f"paper_record: results must be a dict of numbers, got {type(results).__name__}")
    sizes = {k: _jsonable(v) for k, v in sizes.items()}
    results = {k: _jsonable(v) for k, v in results.items()}
    claims = [{k: v for k, v in c.items() if k != "clock"} for c in _RECORDED if c["clock"] >= started]
    if not claims and not results:
        raise ValueError("paper_record: nothing to record: no claim was recorded (ngdlib.record) since `started` "
                         "and no results were given")
    _finite_tree(sizes, "sizes")
    _finite_tree(results, "results")
    import numpy

    payload = {
        "scale": scale,
        "device": dev.type,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(now - started, 3),
        "sizes": sizes,
        "claims": claims,
        "results": results,
    }
    path = Path(path)
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"paper-scale record written to {path} ({payload['gpu'] or payload['processor']}, {dev.type}, "
          f"{payload['seconds']:.0f} s, {len(claims)} claim(s))")
    return path
