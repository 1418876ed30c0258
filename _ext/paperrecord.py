"""Paper-scale records on a chapter's page: ``{paper-record} <glob>``.

A notebook run with ``SCALE = "paper"`` writes its record beside the chapter with ``ngdlib.records.paper_record``
(running.md). The directive, placed on the chapter's page, reads every committed record that matches ``<glob>``
(relative to the page's folder, e.g. ``z-c1-paper-*.json``) and renders, per record, one sentence on where and when
it ran (device, GPU or processor, Python, torch, CUDA, date, wall time) and the sizes, then a table of the claims it
decided (status, summary, slack). Without a record it says so: "not yet recorded (needs <the :needs: option>)".
Nothing is estimated: the page shows a committed record or its absence.

Strictness: a record that cannot be read, or lacks a field ``paper_record`` writes, is a build warning (and so fails
the strict build).
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from dashboard import _cell, _para, _table   # the dashboard's table helpers (same _ext folder, on sys.path)

logger = logging.getLogger(__name__)

FIELDS = ("scale", "device", "gpu", "processor", "python", "torch", "cuda", "date", "seconds", "sizes", "claims")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def describe(rec: dict) -> str:
    """One sentence: where, when and at which sizes a paper-scale record was made."""
    where = f"GPU {rec['gpu']}" if rec.get("gpu") else f"CPU ({rec['processor']})"
    sizes = ", ".join(f"{k} = {_value(v)}" for k, v in rec["sizes"].items())
    return (f"Recorded at SCALE = \"{rec['scale']}\" on {where}, device {rec['device']}, Python {rec['python']}, "
            f"torch {rec['torch']}" + (f", CUDA {rec['cuda']}" if rec.get("cuda") else "")
            + f", {rec['date']}, wall time {rec['seconds']:.0f} s; sizes: {sizes}.")


class PaperRecord(SphinxDirective):
    required_arguments = 1
    has_content = False
    option_spec = {"needs": directives.unchanged_required}

    def run(self):
        pattern = self.arguments[0]
        folder = (Path(self.env.srcdir) / self.env.docname).parent
        paths = sorted(folder.glob(pattern))
        if not paths:
            needs = self.options.get("needs", "a GPU")
            return [_para(nodes.emphasis("", "Paper scale: not yet recorded"),
                          nodes.Text(f" (needs {needs}). The CI-scale result is in the check notebook; no "
                                     "paper-scale number is estimated from it."))]
        out = []
        for path in paths:
            self.env.note_dependency(str(path))
            try:
                rec = json.loads(path.read_text())
                missing = [f for f in FIELDS if f not in rec]
                if missing:
                    raise ValueError(f"fields missing: {missing}")
            except (OSError, ValueError) as e:
                logger.warning(f"paper-record: cannot read {path.name}: {e}", location=self.get_location())
                continue
            out.append(_para(nodes.strong("", f"{path.name}: "), nodes.Text(describe(rec))))
            table, tbody = _table(["dashboard", "paper-record"], [
                ("Claim", 10), ("Status", 12), ("What the paper-scale run measured", 58), ("Slack", 20)])
            for c in rec["claims"]:
                row = nodes.row()
                row += _cell(_para(nodes.Text(c["claim"])))
                row += _cell(_para(nodes.Text(c["status"])))
                row += _cell(_para(nodes.Text(c["summary"])))
                slack = "–" if c.get("slack") is None else f"{_value(c['slack'])} ({c.get('slack_meaning', '')})"
                row += _cell(_para(nodes.Text(slack)))
                tbody += row
            if rec["claims"]:
                out.append(table)
            if rec.get("results"):
                out.append(_para(nodes.Text("Further results: " + "; ".join(
                    f"{k} = {_value(v)}" for k, v in rec["results"].items()) + ".")))
        return out


def setup(app):
    app.add_directive("paper-record", PaperRecord)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
