"""Theorem boxes carry the papers' numbering, not the book's.

sphinx-proof numbers every box in reading order ("Theorem 6"), which beside the papers' own numbering ("Theorem 4")
misleads a reader: the box of the paper's Theorem 4 came out as "Theorem 6". Every box of this book already names
its source in its title ("K-FAC, as printed (paper, Theorem 4 and eq. 14)"), so the book's own counter is switched
off for all boxes (sphinx-proof's ``:nonumber:``, set for every box here rather than on 90 boxes by hand, so that a
new page cannot forget it), and a reference without explicit text, which sphinx-proof would render as a bare
"Theorem ", shows the claim ID for a claim box (``claim-Z-T4`` -> "claim Z-T4") and the box title otherwise.
"""
from docutils import nodes
from sphinx_proof.directive import ElementDirective
from sphinx_proof.domain import ProofDomain

_run = ElementDirective.run
_resolve = ProofDomain.resolve_xref


def _run_unnumbered(self):
    self.options.setdefault("nonumber", None)
    out = _run(self)
    box = out[0]
    self.env.proof_list[box["label"]]["book_title"] = box["title"].strip(" ()")
    return out


def _ref_text(entry, target):
    if target.startswith("claim-"):
        return "claim " + target[len("claim-"):]
    title = entry.get("book_title", "")
    return title if title and "$" not in title else target


def _resolve_titled(self, env, fromdocname, builder, typ, target, node, contnode):
    ref = _resolve(self, env, fromdocname, builder, typ, target, node, contnode)
    entry = getattr(env, "proof_list", {}).get(target)
    if ref is None or entry is None or target not in contnode.astext():
        return ref  # unresolved, or the author gave the text explicitly
    ref.children = [nodes.Text(_ref_text(entry, target))]
    return ref


def setup(app):
    app.setup_extension("sphinx_proof")
    ElementDirective.run = _run_unnumbered
    ProofDomain.resolve_xref = _resolve_titled
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
