"""The HTML of `uet report`: one page, everything inline (CSS, SVG, a few lines of JS), no
network. Elements tests and scripts may count: ``.bar`` (with ``.bar-tool``,
``.bar-acceptance``, ``.bar-verify``, ``.bar-ledger``) in ``#gantt``, ``.node`` (with
``.state-STATE`` and ``.critical``) in ``#dag``, ``details.ws`` per workstream. Script errors
land in ``<body data-errors>`` (window.onerror), so a headless browser's DOM dump shows them.
"""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uet_git.cli.reportdata import Report

STATE_COLOURS = {
    "pending": "#c9ced6", "running": "#7fb3ff", "created": "#b7d7f5", "validated": "#9fc9f0",
    "queued": "#f5e29b", "applied": "#f2c46d", "verified": "#a6e3a1", "committed": "#3fb950",
    "quarantined": "#f85149", "blocked": "#d29922", "dropped": "#8b949e",
    "rolled-back": "#a371f7",
}
STEP_COLOURS = {"tool": "#388bfd", "acceptance": "#a371f7", "verify": "#3fb950",
                "ledger": "#8b949e"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;
color:#1f2328;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}
.meta{color:#57606a}.facts{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.fact{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:130px}
.fact b{display:block;font-size:18px}.fact span{color:#57606a;font-size:12px}
svg text{font:12px system-ui,sans-serif;fill:#1f2328}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;
height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
details.ws{border:1px solid #d0d7de;border-radius:6px;margin:6px 0;padding:4px 10px}
details.ws>summary{cursor:pointer;font-weight:600}details details{margin:4px 0 4px 12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:420px;font-size:12px;
white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left;
border-bottom:1px solid #eaeef2;vertical-align:top}
.pill{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;color:#000}
.bar:hover,.node:hover{stroke:#000;stroke-width:1.5}
"""

JS = """
window.onerror=function(m,s,l){var b=document.body;b.dataset.errors=
(b.dataset.errors?b.dataset.errors+'\\n':'')+m+' @'+l;};
document.addEventListener('DOMContentLoaded',function(){
document.querySelectorAll('[data-ws]').forEach(function(el){el.addEventListener('click',
function(){var d=document.getElementById('ws-'+el.dataset.ws);if(d){d.open=true;
d.scrollIntoView({behavior:'smooth'});}});});
document.body.dataset.ready='1';});
"""


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} s" if x < 120 else f"{int(x) // 60} min {int(x) % 60:02d} s"


def _who(worker: int) -> str:
    if worker >= 0:
        return f"worker {worker}"
    return "integrator" if worker == -1 else f"verifier {-worker - 1}"


def gantt(rep: Report) -> str:
    steps = [s for s in rep.steps if s.get("start") is not None]
    if not steps:
        return '<p class="meta">No steps recorded.</p>'
    ends = [float(s["end"]) for s in steps if s.get("end") is not None]
    t0 = min(float(s["start"]) for s in steps)
    session_ends = [float(x["ended"]) for x in rep.sessions if x.get("ended")]
    t1 = max(ends + session_ends + [t0 + 1.0])
    workers = sorted({int(s["worker"]) for s in steps}, key=lambda w: (w < 0, abs(w)))
    row = {w: i for i, w in enumerate(workers)}
    left, width, rh = 110, 1060, 26
    span = max(t1 - t0, 1e-3)
    scale = (width - left - 30) / span
    height = rh * len(workers) + 30
    out = [f'<svg id="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="worker Gantt chart">']
    busy: dict[int, float] = {}
    for s in steps:
        end = float(s["end"]) if s.get("end") is not None else t1
        busy[int(s["worker"])] = busy.get(int(s["worker"]), 0.0) + end - float(s["start"])
    for w, i in row.items():
        y = i * rh
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{rh}" '
                   f'fill="{"#f6f8fa" if i % 2 else "#fff"}"/>')
        out.append(f'<text x="6" y="{y + 17}">{e(_who(w))}<title>busy '
                   f'{busy.get(w, 0.0):.1f} s of {span:.1f} s</title></text>')
        out.append(f'<text class="util" x="{left - 6}" y="{y + 17}" text-anchor="end" '
                   f'style="fill:#57606a">{busy.get(w, 0.0) / span:.0%}</text>')
    ticks = 8
    for k in range(ticks + 1):
        x = left + (width - left - 30) * k / ticks
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 24}" '
                   'stroke="#d0d7de" stroke-width="0.5"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                   f'{span * k / ticks:.1f}s</text>')
    for s in steps:
        start = float(s["start"])
        end = float(s["end"]) if s.get("end") is not None else t1
        x = left + (start - t0) * scale
        bw = max((end - start) * scale, 2.0)
        y = row[int(s["worker"])] * rh + 4
        step = str(s.get("step") or "")
        colour = STEP_COLOURS.get(step, "#8b949e")
        failed = s.get("ok") is False
        tip = (f"{s['ws']} attempt {s.get('attempt', 1)}: {step} on {_who(int(s['worker']))}, "
               f"{end - start:.2f} s" + (" — FAILED" if failed else "")
               + (f" ({s['detail']})" if s.get("detail") else ""))
        ring = ' stroke="#cf222e" stroke-width="2"' if failed else ""
        out.append(
            f'<rect class="bar bar-{e(step)}{" failed" if failed else ""}" '
            f'data-ws="{e(s["ws"])}" x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{rh - 8}" '
            f'rx="3" fill="{colour}"{ring}><title>{e(tip)}</title></rect>')
        if bw > 40:
            out.append(f'<text x="{x + 4:.1f}" y="{y + 13}" style="fill:#fff;'
                       f'pointer-events:none">{e(str(s["ws"])[: int(bw / 7)])}</text>')
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>'
                     for k, c in STEP_COLOURS.items() if k != "ledger" or not rep.timed)
    note = "" if rep.timed else (' <span class="meta">(no timings recorded for this run: '
                                 'one bar per workstream from the ledger\'s times)</span>')
    return f'<div class="legend">{legend}{note}</div>' + "".join(out)


def dag(rep: Report) -> str:
    ids = rep.order
    if not ids:
        return '<p class="meta">No workstreams.</p>'
    levels = {i: rep.levels.get(i, 0) for i in ids}
    cols: dict[int, list[str]] = {}
    for i in ids:
        cols.setdefault(levels[i], []).append(i)
    nw, nh, gx, gy = 150, 30, 60, 14
    pos: dict[str, tuple[float, float]] = {}
    for c, members in sorted(cols.items()):
        for r, i in enumerate(members):
            pos[i] = (20 + c * (nw + gx), 20 + r * (nh + gy))
    width = int(max(x for x, _ in pos.values()) + nw + 20)
    height = int(max(y for _, y in pos.values()) + nh + 20)
    crit = set(rep.critical_path)
    crit_edges = set(itertools.pairwise(rep.critical_path))
    out = [f'<svg id="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="dependency graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" '
           'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
           'fill="#57606a"/></marker></defs>']
    for i in ids:
        for d in rep.workstreams[i].deps:
            if d not in pos:
                continue
            (x1, y1), (x2, y2) = pos[d], pos[i]
            hot = (d, i) in crit_edges
            out.append(f'<path class="edge{" critical" if hot else ""}" d="M{x1 + nw},'
                       f'{y1 + nh / 2} C{x1 + nw + gx / 2},{y1 + nh / 2} {x2 - gx / 2},'
                       f'{y2 + nh / 2} {x2},{y2 + nh / 2}" fill="none" '
                       f'stroke="{"#cf222e" if hot else "#8c959f"}" '
                       f'stroke-width="{3 if hot else 1.2}" marker-end="url(#arrow)"/>')
    for i in ids:
        x, y = pos[i]
        w = rep.workstreams[i]
        colour = STATE_COLOURS.get(w.state, "#c9ced6")
        hot = i in crit
        label = i if len(i) <= 20 else i[:19] + "…"
        out.append(f'<g class="node state-{e(w.state)}{" critical" if hot else ""}" '
                   f'data-ws="{e(i)}" style="cursor:pointer"><rect x="{x}" y="{y}" '
                   f'width="{nw}" height="{nh}" rx="6" fill="{colour}" '
                   f'stroke="{"#cf222e" if hot else "#57606a"}" '
                   f'stroke-width="{2.5 if hot else 1}"/><text x="{x + 8}" y="{y + 19}">'
                   f'{e(label)}</text><title>{e(i)}: {e(w.state)}'
                   f'{" (" + e(w.reason) + ")" if w.reason else ""}</title></g>')
    out.append("</svg>")
    used = sorted({w.state for w in rep.workstreams.values()})
    legend = "".join(f'<span><i style="background:{STATE_COLOURS.get(s, "#ccc")}"></i>{e(s)}'
                     '</span>' for s in used)
    legend += '<span><i style="background:#cf222e"></i>critical path</span>'
    return f'<div class="legend">{legend}</div>' + "".join(out)


def workstream_details(rep: Report) -> str:
    out = []
    for i in rep.order:
        w = rep.workstreams[i]
        colour = STATE_COLOURS.get(w.state, "#ccc")
        out.append(f'<details class="ws" id="ws-{e(i)}"><summary>{e(i)} '
                   f'<span class="pill" style="background:{colour}">{e(w.state)}</span> '
                   f'{e(w.reason or "")}</summary>')
        rows = "".join(f"<tr><td>{e(h['time'])}</td><td>{e(h['from'] or 'none')} → "
                       f"{e(h['to'])}</td><td>{e(h['attempt'] or '')}</td>"
                       f"<td>{e(h['reason'] or '')}</td><td>{e(h['summary'])}</td></tr>"
                       for h in w.history)
        out.append("<table><tr><th>time</th><th>transition</th><th>attempt</th>"
                   f"<th>reason</th><th>what</th></tr>{rows}</table>")
        for name, text in w.evidence.items():
            out.append(f'<details class="evidence"><summary>{e(name)}</summary>'
                       f"<pre>{e(text)}</pre></details>")
        if w.diff:
            out.append(f'<details class="diff"><summary>diff</summary><pre>{e(w.diff)}</pre>'
                       "</details>")
        out.append("</details>")
    return "".join(out)


def render_html(rep: Report) -> str:
    b = rep.bounds
    measured = b.get("measured_bound_seconds")
    eff = b.get("efficiency")
    tool_runs = sum(1 for s in rep.steps if s.get("step") == "tool")
    facts = [
        ("wall time", _secs(rep.wall), "the run's processes, start to last event"),
        ("bound (plan)", _secs(b.get("bound_seconds")), str(b.get("bound_from") or "")),
        ("bound (measured)", _secs(measured), "max(critical path, work / jobs)"),
        ("parallel efficiency", f"{eff:.0%}" if isinstance(eff, int | float) else "-",
         "measured bound / wall time"),
        ("workers", str(rep.jobs), f"{tool_runs} tool runs"),
    ]
    fact_html = "".join(f'<div class="fact"><span>{e(k)}</span><b>{e(v)}</b>'
                        f'<span>{e(sub)}</span></div>' for k, v, sub in facts)
    counts = ", ".join(f"{n} {s}" for s, n in rep.counts.items()) or "no workstreams"
    flags = ", ".join(f for f in ("finished" if rep.finished else None, rep.landed_as)
                      if f) or "not finished"
    crit = " → ".join(rep.critical_path) or "-"
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>uet report {e(rep.run)}</title><style>{CSS}</style>"
        f"<script>{JS}</script></head><body>"
        f"<h1>uet run {e(rep.run)}</h1>"
        f'<div class="meta">base {e((rep.base or "-")[:12])} · target {e(rep.target or "-")}'
        f" · started {e(rep.started or '-')} · {e(flags)} · {e(counts)}</div>"
        f'<div class="facts">{fact_html}</div>'
        f"<h2>Workers</h2>{gantt(rep)}"
        f"<h2>Dependency graph</h2>{dag(rep)}"
        f'<p>critical path: <b id="critical-path">{e(crit)}</b></p>'
        f"<h2>Workstreams</h2>{workstream_details(rep)}"
        "</body></html>\n")
