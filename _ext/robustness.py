"""The "Robustness over seeds" page: a pass table and one strip plot, built from a committed sweep table.

``{seed-sweep} <path>`` reads a table written by ``python -m ngdlib.sweep ... --export <path>`` (JSON lines, one row
per cell: notebook, seed, status, the claims the notebook recorded with their slack) and renders, at build time:

1. one sentence on what was run (cells, seeds, versions, wall time);
2. a table with one row per check: the claims it records, passes / cells, the pass rate with its Wilson 95% interval
   (``ngdlib.sweep.wilson``), the failing seeds, and the median and range of each claim's slack;
3. one figure: per recorded claim, the slack of every passing seed as a dot (log scale), so that the spread over
   seeds and the distance from the failure threshold are seen at once.

**Versions.** Each row names the content hashes of the notebook and the library it ran (``notebook_sha``,
``library_sha``) and, for rows of the fourth sweep on, of its code cells alone (``code_sha``: a prose edit does not
change what a notebook asserts). The pass rates count, per notebook and seed, one row that ran the notebook's code *as
it is now* (the one that also ran the current library when there is one, else the last in the table); rows that ran
an earlier version of the notebook are not counted in the rates but reported beside them ("earlier versions"),
because a check that was fixed after failing must not look robust by its old passes, nor fragile by its old
failures.

The figure is drawn with matplotlib (Agg) into ``_build/robustness/`` and referenced as an image, so Sphinx copies it
into the HTML like any other figure. Strictness: an unreadable table, or a check without a ``check-<ID>`` label (the
link would not resolve under ``-n``), fails the build.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from dashboard import _cell, _para, _table   # the dashboard's table helpers (same _ext folder, on sys.path)

logger = logging.getLogger(__name__)


def _fmt(x):
    return f"{x:.3g}"


def _load(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: the sweep table is empty")
    return rows


def _ranges(seeds) -> str:
    seeds, parts = sorted(seeds), []
    for x in seeds:
        if parts and x == parts[-1][1] + 1:
            parts[-1][1] = x
        else:
            parts.append([x, x])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def split_versions(rows, root: Path):
    """``(current, earlier, current_library)``: one row per (notebook, scale, device, seed) among the rows that ran
    the notebook's present code (same ``code_sha``, the hash of its code cells, when the row has one; else the same
    ``notebook_sha``, the whole file), preferring a row that ran the present library, else the last; the rows of
    earlier notebook versions; and how many current rows ran the present library."""
    from ngdlib.sweep import code_hash, library_hash, same_version

    lib = library_hash(root)[:16]
    shas = {}
    current, earlier = {}, []
    for r in rows:
        nb = r["notebook"]
        if nb not in shas:
            f = root / nb
            shas[nb] = (hashlib.sha256(f.read_bytes()).hexdigest()[:16], code_hash(f)) if f.exists() else (None, None)
        if not same_version(r, *shas[nb]):
            earlier.append(r)
            continue
        cell = (nb, r["scale"], r["device"], r["seed"])
        old = current.get(cell)
        if old is None or r.get("library_sha") == lib or old.get("library_sha") != lib:
            current[cell] = r
    cur = list(current.values())
    return cur, earlier, sum(r.get("library_sha") == lib for r in cur)


def _grid(rows) -> str:
    """'27 notebooks x seeds 0-4', or with the notebooks that ran more seeds named."""
    per = {}
    for r in rows:
        per.setdefault(r["check"], set()).add(r["seed"])
    common = set.intersection(*per.values())
    text = f"{len(per)} notebooks x seeds {_ranges(common)}"
    more = {c: s - common for c, s in per.items() if s - common}
    if more:
        text += "; more seeds for " + ", ".join(f"{c} (also {_ranges(s)})" for c, s in sorted(more.items()))
    return text


def _figure(summary, png: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = []
    for c in summary["checks"].values():
        for cid, cl in c["claims"].items():
            claims.append((cid, cl, c))
    claims = [x for x in claims if x[1]["slack"]]
    n = len(claims)
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * n + 1.3))
    positive = all(v > 0 for _, cl, _ in claims for _, v in cl["slack"])
    for i, (cid, cl, c) in enumerate(claims):
        y = n - 1 - i
        vals = [v for _, v in cl["slack"]]
        jitter = [((s * 0.6180339887) % 1 - 0.5) * 0.35 for s, _ in cl["slack"]]
        colour = "tab:blue" if c["passed"] == c["cells"] else "tab:red"
        ax.scatter(vals, [y + j for j in jitter], s=9, color=colour, alpha=0.6, linewidths=0)
        med = sorted(vals)[len(vals) // 2]
        ax.plot([med, med], [y - 0.3, y + 0.3], color="black", lw=1.2)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{cid}  ({c['passed']}/{c['cells']})" for cid, _, c in reversed(claims)], fontsize=8)
    ax.set_xscale("log" if positive else "symlog")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("recorded slack of each passing seed (log scale; black bar: median)\ndashed: 1, the limit of the "
                  "slacks defined as bound / observed or observed / allowed;\nsome slacks are spreads or step sizes "
                  "instead: the table says what each one is", fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Slack over seeds, per claim (red: a claim whose check failed at some seed)", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130)
    plt.close(fig)
    return n


class SeedSweep(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        from ngdlib.sweep import summarise

        rel = self.arguments[0]
        path = Path(self.env.srcdir) / rel
        self.env.note_dependency(str(path))
        try:
            rows = _load(path)
        except (OSError, ValueError) as e:
            logger.warning(f"seed-sweep: cannot read the sweep table {rel}: {e}", location=self.get_location())
            return []
        all_rows = rows
        rows, earlier, on_lib = split_versions(all_rows, Path(self.env.srcdir))
        if not rows:
            logger.warning(f"seed-sweep: no row of {rel} ran a notebook as it is now", location=self.get_location())
            return []
        s = summarise(rows)
        old = summarise(earlier) if earlier else {"checks": {}}
        envs = [r["environment"] for r in rows if r.get("environment")]
        e = envs[0] if envs else {}
        walls = sorted(r["wall_s"] for r in rows if r.get("wall_s") is not None)
        out = [_para(nodes.Text(
            f"{s['cells']} cells ran the notebooks as they are now, {s['passed']} passed: {_grid(rows)}. "
            f"{on_lib} of them ran the present library, {s['cells'] - on_lib} an earlier state of it (the library's "
            f"hash covers every byte of ngdlib/, docstrings included). "
            f"{len(earlier)} further rows ran earlier versions of some notebooks (not counted in the rates; see the "
            f"last column). Run with torch {e.get('torch')}, numpy {e.get('numpy')}, Python {e.get('python')}, "
            f"{'GPU ' + e['cuda'] if e.get('cuda') else 'CPU'} ({e.get('threads')} thread per notebook); "
            f"wall time per cell: median {walls[len(walls) // 2]:.1f} s, summed over the cells {sum(walls) / 60:.0f} min."))]

        table, tbody = _table(["dashboard", "seed-sweep"], [
            ("Check", 12), ("Claims recorded", 12), ("Passed", 10), ("Pass rate (95% interval)", 16),
            ("Failing seeds", 12), ("Slack over passing seeds: median [min, max] (what it is)", 30),
            ("Earlier versions: passed (failing seeds)", 8)])
        for c in s["checks"].values():
            row = nodes.row()
            label = f"check-{c['check']}".lower()
            ref = addnodes.pending_xref("", nodes.inline(c["check"], c["check"]), refdomain="std", reftype="ref",
                                        reftarget=label, refexplicit=True, refwarn=True, refdoc=self.env.docname)
            row += _cell(_para(ref))
            row += _cell(_para(nodes.Text(", ".join(c["claims"]) or "–")))
            ok = c["passed"] == c["cells"]
            row += _cell(_para(nodes.inline("", f"{c['passed']}/{c['cells']}",
                                            classes=["dash-ok" if ok else "dash-refuted"])))
            lo, hi = c["interval"]
            row += _cell(_para(nodes.Text(f"{c['rate']:.2f} [{lo:.2f}, {hi:.2f}]")))
            row += _cell(_para(nodes.Text(", ".join(map(str, c["failed_seeds"])) or "none")))
            parts = []
            for cid, cl in c["claims"].items():
                vals = sorted(v for _, v in cl["slack"])
                if vals:
                    parts.append(f"{cid}: {_fmt(vals[len(vals) // 2])} [{_fmt(vals[0])}, {_fmt(vals[-1])}] "
                                 f"({cl['slack_meaning']})")
                else:
                    parts.append(f"{cid}: no slack recorded")
            row += _cell(_para(nodes.Text("; ".join(parts) or "–")))
            o = old["checks"].get(c["check"])
            row += _cell(_para(nodes.Text(
                "–" if o is None else f"{o['passed']}/{o['cells']}"
                + (f" ({', '.join(map(str, o['failed_seeds']))})" if o["failed_seeds"] else ""))))
            tbody += row

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        png = Path(self.env.srcdir) / "_build" / "robustness" / f"seed-sweep-{digest}.png"
        n = _figure(s, png)
        fig = nodes.figure(align="center")
        fig += nodes.image(uri="/" + png.relative_to(self.env.srcdir).as_posix(),
                           alt=f"Strip plot of the recorded slack over seeds for {n} claims")
        fig += nodes.caption("", "", nodes.Text(
            "Each dot is one seed at which the check passed; its position is the slack the notebook recorded (see "
            "the table for what each slack is). Rows in red belong to a check that failed at some seed: a failing "
            "seed records nothing, so it has no dot; the count of passes is next to the claim."))
        return out + [fig, table]


def setup(app):
    app.add_directive("seed-sweep", SeedSweep)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
