"""The verification dashboard: a table of every claim, filled at build time from what the notebooks recorded.

``{claims-dashboard}`` leaves a placeholder; once every document has been read (so every notebook has executed and
written its ``_build/records/<ID>.json`` through ``ngdlib.record``), the ``doctree-resolved`` handler replaces it by
a table with one row per claim of ``claims.yml``: status, slack, the recorded summary, and a link to the check.

Strictness (the build runs with -W): a record whose ID is not in the catalogue, or a claim whose check page exists
(label ``check-<ID>``) but which recorded nothing, is a warning and fails the build.

Mutation testing (``make test-mutants``) writes ``tests/mutants/score.json``; the dashboard shows the overall score above
the table and a column "mutants killed / total" per claim, and ``{mutation-table}`` (page ``mutation.md``) lists every
mutant of ``tests/mutants/catalogue.yml`` with its outcome. Both read the committed files, so the build does not run
the mutants; a mutant whose catalogue entry changed after its last run counts as "not run".
"""
from __future__ import annotations

import importlib.util
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


class mutation_placeholder(nodes.General, nodes.Element):
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


def _mutation_runner(app):
    """The runner module tests/mutants/run.py (stdlib + yaml only), for its catalogue and score helpers."""
    path = Path(app.srcdir) / app.config.dashboard_mutants_runner
    spec = importlib.util.spec_from_file_location("_ngd_mutants_run", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load_mutants(app):
    """(catalogue, current results by id, summary, last run) or None when there is no catalogue.

    A result counts only if its hash matches the catalogue entry as it is now (else the mutant is "not run")."""
    src = Path(app.srcdir)
    cat_path = src / app.config.dashboard_mutants_catalogue
    if not cat_path.is_file():
        return None
    run = _mutation_runner(app)
    cat = run.load_catalogue(cat_path)
    nbs = run.claim_notebooks(src)
    score_path = src / app.config.dashboard_mutants_score
    score = json.loads(score_path.read_text()) if score_path.is_file() else {}
    results = {}
    for m in cat["mutants"]:
        r = score.get("mutants", {}).get(m["id"])
        if r is not None and r.get("hash") == run.entry_hash(m, cat, nbs):
            results[m["id"]] = r
    summary = run.summarise(cat, results, nbs)
    last = (score.get("runs") or [None])[-1]
    return cat, results, summary, last


def _mutation_sentence(summary, last) -> str:
    if summary["total"] == 0:
        return "The mutation catalogue is empty."
    pct = f"{100 * summary['killed'] / summary['total']:.0f} %"
    unit = summary["killed"] - summary["killed_by_notebook"]
    text = (f"Mutation score: {summary['killed']} of {summary['total']} deliberate mistakes in ngdlib killed ({pct}; "
            f"{summary['killed_by_notebook']} by a notebook, {unit} only by a unit test), "
            f"{summary['survived']} survived, {summary['error']} errors, {summary['not run']} not run")
    if last:
        text += f" (last run {last.get('date')}, commit {last.get('commit')})"
    return text + "."


def _table(classes, columns):
    """An empty table with a header row: ``columns`` is a list of (title, relative width). Returns (table, tbody)."""
    table = nodes.table(classes=classes)
    tgroup = nodes.tgroup(cols=len(columns))
    table += tgroup
    for _, width in columns:
        tgroup += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    tgroup += thead
    head = nodes.row()
    for title, _ in columns:
        head += _cell(_para(nodes.Text(title)))
    thead += head
    tbody = nodes.tbody()
    tgroup += tbody
    return table, tbody


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
    mut = _load_mutants(app)
    per_claim = {}
    if mut:
        cat, results, _, _ = mut
        for m in cat["mutants"]:
            r = results.get(m["id"])
            for cid in m["claims"]:
                k, t = per_claim.get(cid, (0, 0))
                per_claim[cid] = (k + int(bool(r) and r["outcome"] == "killed"), t + 1)
    table, tbody = _table(["dashboard"], [("Claim", 10), ("Statement", 28), ("Whose statement", 10), ("Status", 12),
                                          ("Slack", 7), ("Mutants killed", 8), ("What the check measured", 28)])
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
        k, t = per_claim.get(cid, (0, 0))
        row += _cell(_para(nodes.inline(f"{k}/{t}" if t else "–", f"{k}/{t}" if t else "–",
                                        classes=["dash-ok" if t and k == t else "dash-open"] if t else [])))
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
    extra = []
    if mut:
        line = _para(nodes.Text(_mutation_sentence(mut[2], mut[3]) + " "))
        if "mutation" in app.env.all_docs:
            uri = app.builder.get_relative_uri(docname, "mutation")
            line += nodes.reference("", "Mutation testing", refuri=uri, internal=True)
            line += nodes.Text(" lists every mutant; the column \"Mutants killed\" counts the mutants attributed to "
                               "each claim.")
        extra.append(line)
    for ph in placeholders:
        ph.replace_self([intro, *extra, table])


class MutationTable(SphinxDirective):
    has_content = False

    def run(self):
        src = Path(self.env.srcdir)
        for name in ("dashboard_mutants_catalogue", "dashboard_mutants_score", "dashboard_mutants_runner"):
            self.env.note_dependency(str(src / getattr(self.config, name)))
        return [mutation_placeholder()]


def _literal_block_cell(text: str):
    return _cell(nodes.literal_block(text, text))


def fill_mutation_table(app, doctree, docname):
    placeholders = list(doctree.findall(mutation_placeholder))
    if not placeholders:
        return
    mut = _load_mutants(app)
    if mut is None:
        logger.warning(f"mutation table: no catalogue at {app.config.dashboard_mutants_catalogue}", location=docname)
        for ph in placeholders:
            ph.replace_self([])
        return
    cat, results, summary, last = mut
    std = app.env.get_domain("std")
    table, tbody = _table(["dashboard", "mutants"], [("Mutant", 12), ("Claims", 8), ("Change", 34),
                                                     ("Why an author could make it", 18), ("Outcome", 8),
                                                     ("Killed by / why it survives", 20)])
    for m in cat["mutants"]:
        r = results.get(m["id"])
        outcome = r["outcome"] if r else "not run"
        row = nodes.row()
        row += _cell(_para(nodes.literal(m["id"], m["id"])))
        claims_para = nodes.paragraph()
        for i, cid in enumerate(m["claims"]):
            if i:
                claims_para += nodes.Text(", ")
            label = std.labels.get(f"check-{cid}".lower())
            if label:
                uri = app.builder.get_relative_uri(docname, label[0]) + "#" + label[1]
                claims_para += nodes.reference("", cid, refuri=uri, internal=True)
            else:
                claims_para += nodes.Text(cid)
        row += _cell(claims_para)
        change = f"# {m['file']}\n- {m['original']}\n+ {m['replacement']}"
        row += _literal_block_cell(change)
        row += _cell(_para(nodes.Text(m["rationale"])))
        cls = {"killed": "dash-ok", "survived": "dash-refuted", "error": "dash-open"}.get(outcome, "dash-missing")
        row += _cell(_para(nodes.inline(outcome, outcome, classes=[cls])))
        if outcome == "killed":
            what = r.get("first_failure") or ""
            detail = f"{r.get('killed_by')}: {what}" + (f" ({r['message']})" if r.get("message") else "")
        elif outcome == "survived":
            detail = m.get("survivor_note") or "survives: open"
        elif outcome == "error":
            detail = f"error: {r.get('message', '')}"
        else:
            detail = "not run since the entry last changed"
        row += _cell(_para(nodes.Text(detail)))
        tbody += row
    intro = _para(nodes.Text(_mutation_sentence(summary, last)))
    for ph in placeholders:
        ph.replace_self([intro, table])


def setup(app):
    app.add_config_value("dashboard_claims", "claims.yml", "env")
    app.add_config_value("dashboard_records", "_build/records", "env")
    app.add_config_value("dashboard_mutants_catalogue", "tests/mutants/catalogue.yml", "env")
    app.add_config_value("dashboard_mutants_score", "tests/mutants/score.json", "env")
    app.add_config_value("dashboard_mutants_runner", "tests/mutants/run.py", "env")
    app.add_node(dashboard_placeholder)
    app.add_node(mutation_placeholder)
    app.add_directive("claims-dashboard", ClaimsDashboard)
    app.add_directive("mutation-table", MutationTable)
    app.connect("doctree-resolved", fill_dashboard)
    app.connect("doctree-resolved", fill_mutation_table)
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
