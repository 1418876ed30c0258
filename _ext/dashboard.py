"""The verification dashboard: a table of every claim, filled at build time from what the notebooks recorded.

``{claims-dashboard}`` leaves a placeholder; once every document has been read (so every notebook has executed and
written its ``_build/records/<ID>.json`` through ``ngdlib.record``), the ``doctree-resolved`` handler replaces it by
a table with one row per claim of ``claims.yml``: status, slack, the recorded summary, and a link to the check.

Strictness (the build runs with -W): a record whose ID is not in the catalogue, or a claim whose check page exists
(label ``check-<ID>``) but which recorded nothing, is a warning and fails the build.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

STATUS_CLASS = {
    "verified": "dash-ok",
    "strengthened": "dash-ok",
    "corrected": "dash-corrected",
    "unconfirmed at testable sizes": "dash-refuted",
    "reconstructed": "dash-reconstructed",
    "refuted as printed": "dash-refuted",
    "open": "dash-open",
}


# Whose statement each claim is (claims.yml's `provenance`), in the words the dashboard shows.
PROVENANCE = {
    "quoted": "the paper (quoted)",
    "recalled": "the paper (recalled)",
    "reconstructed": "reconstructed by the book",
    "book": "the book's own",
}


class dashboard_placeholder(nodes.General, nodes.Element):
    pass


class ClaimsDashboard(SphinxDirective):
    has_content = False

    def run(self):
        self.env.note_dependency(str(Path(self.env.srcdir) / self.config.dashboard_claims))
        return [dashboard_placeholder()]


def _records_dir(app) -> Path:
    env = os.environ.get("NGDLIB_RECORDS")
    return Path(env) if env else Path(app.srcdir) / app.config.dashboard_records


def _load(app):
    claims = yaml.safe_load((Path(app.srcdir) / app.config.dashboard_claims).read_text())
    records = {}
    folder = _records_dir(app)
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            rec = json.loads(p.read_text())
            records[rec["claim"]] = rec
    return claims, records


def _para(*children):
    p = nodes.paragraph()
    p.extend(children)
    return p


def _cell(*children):
    entry = nodes.entry()
    entry.extend(children)
    return entry


def _fmt_slack(rec) -> str:
    s = rec.get("slack")
    if s is None:
        return "–"
    return f"{s:.3g}"


def fill_dashboard(app, doctree, docname):
    placeholders = list(doctree.findall(dashboard_placeholder))
    if not placeholders:
        return
    claims, records = _load(app)
    ids = {c["id"] for c in claims}
    for c in claims:
        if c.get("provenance") not in PROVENANCE:
            logger.warning(f"dashboard: claim {c['id']} has provenance {c.get('provenance')!r}; "
                           f"expected one of {sorted(PROVENANCE)}", location=docname)
            c["provenance"] = "book"
    for extra in sorted(set(records) - ids):
        logger.warning(f"dashboard: a notebook recorded claim {extra!r}, which is not in {app.config.dashboard_claims}",
                       location=docname)
    std = app.env.get_domain("std")
    counts = {}
    table = nodes.table(classes=["dashboard"])
    tgroup = nodes.tgroup(cols=6)
    table += tgroup
    for width in (10, 30, 10, 12, 8, 30):
        tgroup += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    tgroup += thead
    head = nodes.row()
    for title in ("Claim", "Statement", "Whose statement", "Status", "Slack", "What the check measured"):
        head += _cell(_para(nodes.Text(title)))
    thead += head
    tbody = nodes.tbody()
    tgroup += tbody
    for c in claims:
        cid = c["id"]
        label = std.labels.get(f"check-{cid}".lower())
        rec = records.get(cid)
        if label and rec is None:
            logger.warning(f"dashboard: claim {cid} has a check page ({label[0]}) but its notebook recorded nothing",
                           location=docname)
        status = rec["status"] if rec else ("no record" if label else "not yet checked")
        counts[status] = counts.get(status, 0) + 1
        if label:
            uri = app.builder.get_relative_uri(docname, label[0]) + "#" + label[1]
            id_node = nodes.reference("", cid, refuri=uri, internal=True)
        else:
            id_node = nodes.Text(cid)
        row = nodes.row()
        row += _cell(_para(id_node))
        row += _cell(_para(nodes.Text(c["title"])))
        row += _cell(_para(nodes.Text(PROVENANCE[c["provenance"]])))
        row += _cell(_para(nodes.inline(status, status, classes=[STATUS_CLASS.get(status, "dash-missing")])))
        row += _cell(_para(nodes.Text(_fmt_slack(rec) if rec else "–")))
        detail = rec["summary"] if rec else ""
        if rec and rec.get("slack_meaning"):
            detail += f" (slack: {rec['slack_meaning']})"
        row += _cell(_para(nodes.Text(detail)))
        tbody += row
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    env_line = ""
    if records:
        e = next(iter(records.values())).get("environment", {})
        env_line = (f" Recorded by this build with torch {e.get('torch')}, "
                    f"{'GPU ' + e['cuda'] if e.get('cuda') else 'CPU'}, Python {e.get('python')}.")
    intro = _para(nodes.Text(f"{len(claims)} claims: {summary}.{env_line}"))
    for ph in placeholders:
        ph.replace_self([intro, table])


def setup(app):
    app.add_config_value("dashboard_claims", "claims.yml", "env")
    app.add_config_value("dashboard_records", "_build/records", "env")
    app.add_node(dashboard_placeholder)
    app.add_directive("claims-dashboard", ClaimsDashboard)
    app.connect("doctree-resolved", fill_dashboard)
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
