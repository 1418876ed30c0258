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
from pathlib import Path

import torch

__all__ = ["record", "records_dir", "STATUSES", "environment"]

# What the check found about the statement (whose statement it is lives in claims.yml's `provenance`):
#   verified        - holds as stated
#   strengthened    - holds as printed, and the book checks a stronger form
#   corrected       - false or ill-posed as printed; a stated corrected form holds and is checked
#   refuted as printed - false as printed
#   unconfirmed at testable sizes - an asymptotic condition that fails at every size the book can test
#   open            - not decided
# ("reconstructed" was a status once; it is provenance now, in claims.yml.)
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
