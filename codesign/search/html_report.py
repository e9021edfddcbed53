"""RUN/report/index.html: one self-contained page per run (no network at view time).

Why one page: the search leaves a dozen files (summary JSON, Pareto JSON, plots, build
reports, RTL, synthesis); people want to open one thing and look. The page is rendered with
Jinja2 from `accel_templates/report/` and carries everything inline: the Pareto front and
the per-layer charts are plotly figures whose JavaScript is embedded in the page (pinned
`plotly`; without it the matplotlib PNGs are embedded as base64), the numbers come from the
run folder's own files, and every artefact of the run folder is linked relatively, so the
folder can be copied or zipped and still opens.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from pathlib import Path
from typing import Any

from codesign.atomic import read_json, write_text

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates" / "report"
_SKIP_DIRS = {"__pycache__", ".git", "obj_dir"}
MAX_LINKS = 400


def _read(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except Exception as exc:  # noqa: BLE001 - a damaged side file must not stop the report
        log.warning("report: cannot read %s (%s)", path, exc)
        return None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def artefacts(run: Path, exclude: Path) -> tuple[list[dict[str, Any]], int]:
    """Every file of the run folder (relative link, folder, size), the report itself excluded;
    big folders of trial checkpoints are listed up to MAX_LINKS entries in all."""
    out: list[dict[str, Any]] = []
    total = 0
    for p in sorted(run.rglob("*")):
        if not p.is_file() or any(part in _SKIP_DIRS for part in p.relative_to(run).parts):
            continue
        if exclude in p.parents:
            continue
        total += 1
        if len(out) < MAX_LINKS:
            rel = p.relative_to(run)
            out.append({"href": "../" + rel.as_posix(), "name": rel.as_posix(),
                        "folder": rel.parts[0] if len(rel.parts) > 1 else ".", "size": _size(p.stat().st_size)})
    return out, total


def _png(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def _figures(records: list[dict], front: list[dict], chosen: dict | None, baselines: list[dict],
             limits: dict, layers: list[dict], relevance: dict[str, float]) -> dict[str, str] | None:
    """The plotly figures as HTML fragments (their JS library is inlined once by the page)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return None
    cfg = {"displaylogo": False, "responsive": True}
    figs: dict[str, str] = {}
    axes = (("LUT", "LUT"), ("BRAM_18K", "BRAM (18 kb)"), ("fps", "FPS (cost model)"))
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[f"accuracy vs {t}" for _, t in axes])
    for col, (key, _title) in enumerate(axes, start=1):
        first = col == 1
        fig.add_trace(go.Scatter(
            x=[r.get(key) or 0 for r in records], y=[100 * r["accuracy"] for r in records], mode="markers",
            name="trained designs (short-QAT val acc)", legendgroup="trained", showlegend=first,
            marker={"size": 7, "color": "#7f8c8d", "opacity": 0.7},
            text=[f"trial {r['trial']}: {r.get('describe', '')}" for r in records],
            hovertemplate="%{text}<br>%{x:,}<br>%{y:.2f}%<extra></extra>"), row=1, col=col)
        fs = sorted(front, key=lambda r: r.get(key) or 0)
        fig.add_trace(go.Scatter(
            x=[r.get(key) or 0 for r in fs], y=[100 * r["accuracy"] for r in fs], mode="lines+markers",
            name="Pareto front (accuracy, LUT)", legendgroup="front", showlegend=first,
            line={"color": "#c0392b"}, marker={"size": 8, "color": "#c0392b"},
            text=[f"trial {r['trial']}: {r.get('describe', '')}" for r in fs],
            hovertemplate="%{text}<br>%{x:,}<br>%{y:.2f}%<extra></extra>"), row=1, col=col)
        for b in baselines:
            if b.get("accuracy") is None:
                continue
            fig.add_trace(go.Scatter(
                x=[b.get(key) or 0], y=[100 * b["accuracy"]], mode="markers", name=f"uniform {b['name']} (full QAT test)",
                legendgroup=f"b-{b['name']}", showlegend=first, marker={"size": 12, "symbol": "square"},
                hovertemplate=f"uniform {b['name']}<br>%{{x:,}}<br>%{{y:.2f}}%<extra></extra>"), row=1, col=col)
        if chosen and chosen.get("accuracy") is not None:
            fig.add_trace(go.Scatter(
                x=[chosen.get(key) or 0], y=[100 * chosen["accuracy"]], mode="markers",
                name="chosen design (full QAT test)", legendgroup="chosen", showlegend=first,
                marker={"size": 18, "symbol": "star", "color": "gold", "line": {"width": 1, "color": "black"}},
                hovertemplate=f"chosen: {chosen.get('describe', '')}<br>%{{x:,}}<br>%{{y:.2f}}%<extra></extra>"),
                row=1, col=col)
        lim = limits.get(key)
        if lim:
            fig.add_vline(x=lim, line_dash="dash", line_color="black", row=1, col=col,
                          annotation_text=f"{key} budget", annotation_position="top left")
    fig.update_yaxes(title_text="accuracy (%)", row=1, col=1)
    fig.update_layout(height=460, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.18}, template="plotly_white")
    figs["pareto"] = fig.to_html(full_html=False, include_plotlyjs=False, config=cfg, div_id="fig-pareto")
    if layers:
        names = [r["layer"] for r in layers]
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                            subplot_titles=["bits", "kept units (1 - prune ratio)", "LUT (cost model)"])
        fig.add_trace(go.Bar(x=names, y=[r["w"] for r in layers], name="weight bits"), row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=[r["a"] or 0 for r in layers], name="activation bits"), row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=[1 - r["prune"] for r in layers], name="kept", showlegend=False,
                             marker_color="#27ae60"), row=1, col=2)
        fig.add_trace(go.Bar(x=names, y=[r["LUT"] for r in layers], name="LUT", showlegend=False,
                             marker_color="#8e44ad"), row=1, col=3)
        fig.update_layout(height=360, barmode="group", template="plotly_white",
                          margin={"l": 40, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.2})
        figs["design"] = fig.to_html(full_html=False, include_plotlyjs=False, config=cfg, div_id="fig-design")
    if relevance:
        fig = go.Figure(go.Bar(x=list(relevance), y=list(relevance.values()), marker_color="#2980b9",
                               hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
        fig.update_layout(height=300, template="plotly_white", yaxis_title="share of relevance",
                          margin={"l": 50, "r": 20, "t": 20, "b": 40})
        figs["relevance"] = fig.to_html(full_html=False, include_plotlyjs=False, config=cfg, div_id="fig-relevance")
    return figs


def _layers(chosen: dict | None, synth: dict | None) -> list[dict[str, Any]]:
    if not chosen or not chosen.get("per_layer"):
        return []
    d = chosen["candidate"]
    out = []
    for n, p in chosen["per_layer"].items():
        out.append({"layer": n, "w": d["weight_bits"].get(n), "a": d["act_bits"].get(n),
                    "prune": float((d.get("prune") or {}).get(n, 0.0)), "PE": p.get("PE"), "SIMD": p.get("SIMD"),
                    "cycles": p.get("cycles"), "LUT": p.get("LUT"), "BRAM_18K": p.get("BRAM_18K"),
                    "DSP": p.get("DSP")})
    return out


def _verdicts(summary: dict, build: Path) -> list[dict[str, str]]:
    """rtlsim, Yosys and timing verdicts from the build's report files (or 'not run')."""
    rep = build / "report"
    steps = summary.get("hw_steps") or {}
    out: list[dict[str, str]] = []
    perf = _read(rep / "rtlsim_performance.json")
    if perf:
        out.append({"step": "rtlsim (Verilator)", "status": "pass",
                    "text": steps.get("rtlsim") or f"{perf.get('N')} frames bit-exact against the compiled graph; "
                    f"{perf.get('stable_throughput[images/s]', 0):,.0f} FPS measured"})
    else:
        out.append({"step": "rtlsim (Verilator)", "status": "skip", "text": "not run (codesign run with --rtlsim)"})
    syn = _read(rep / "ooc_synth_and_timing.json")
    limits = summary.get("limits") or {}
    if syn:
        over = [f"{k} {syn.get(k, 0):,} > {v:,}" for k, v in limits.items() if syn.get(k) is not None
                and float(syn.get(k) or 0) > float(v)]
        res = ", ".join(f"{k} {syn.get(k):,}" for k in ("LUT", "FF", "BRAM_18K", "DSP") if syn.get(k) is not None)
        out.append({"step": f"synthesis ({syn.get('tool', 'yosys')}, {syn.get('family', '')})",
                    "status": "fail" if over else "pass",
                    "text": res + ("; over budget: " + ", ".join(over) if over else "; within the budget")})
        if syn.get("fmax_mhz") is not None or syn.get("WNS") is not None:
            clk = summary.get("clock_ns")
            fmax = syn.get("fmax_mhz")
            ok = fmax is None or clk is None or float(fmax) >= 1e3 / float(clk)
            out.append({"step": "timing", "status": "pass" if ok else "fail",
                        "text": f"fmax {fmax} MHz, WNS {syn.get('WNS')} ns at a {clk} ns clock"})
        else:
            out.append({"step": "timing", "status": "skip", "text": syn.get("timing_note") or "no timing figures"})
    else:
        out.append({"step": "synthesis (Yosys)", "status": "skip", "text": "not run (codesign run with --synth)"})
    return out


def _rows(summary: dict) -> list[dict[str, Any]]:
    rows = []
    ch = summary.get("chosen")
    if ch:
        rows.append({"design": f"chosen ({summary.get('strategy')})", "chosen": True, **ch})
    for b in summary.get("baselines", []):
        rows.append({"design": f"uniform {b['name']}", "chosen": False, **b})
    return rows


def write_html_report(run: str | Path, summary: dict | None = None) -> Path:
    """Render RUN/report/index.html from the run folder's files; returns its path."""
    import jinja2

    run = Path(run)
    sd = run / "search"
    summary = summary if summary is not None else (_read(sd / "summary.json") or {})
    pareto = _read(sd / "pareto.json") or {}
    records = pareto.get("all") or []
    front = summary.get("front") or pareto.get("front") or []
    from codesign.designspace.space import Candidate

    for r in records:
        if "describe" not in r and r.get("candidate"):
            r["describe"] = Candidate.from_json(r["candidate"]).describe()
    rel_json = _read(run / "relevance.json") or {}
    relevance = {n: float(e.get("score", 0.0)) for n, e in (rel_json.get("layers") or {}).items()}
    build = Path(summary.get("build", {}).get("dir") or run / "BUILD")
    if not build.is_absolute():
        build = run / build
    synth = _read(build / "report" / "ooc_synth_and_timing.json")
    layers = _layers(summary.get("chosen"), synth)
    out_dir = run / "report"
    links, n_files = artefacts(run, out_dir)
    figs = _figures(records, front, summary.get("chosen"), summary.get("baselines", []), summary.get("limits") or {},
                    layers, relevance)
    plotly_js = None
    if figs is not None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: "-" if v is None else (f"{v:,.0f}" if isinstance(v, (int, float)) else str(v))
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.2f}%"
    html = env.get_template("index.html.j2").render(
        s=summary, rows=_rows(summary), layers=layers, relevance=relevance, verdicts=_verdicts(summary, build),
        front=front, n_records=len(records), links=links, n_files=n_files, figs=figs, plotly_js=plotly_js,
        pngs={k: _png(sd / f"{k}.png") for k in ("pareto", "design")}, synth=synth,
        seconds=summary.get("seconds") or {}, build=summary.get("build") or {},
        generated=datetime.datetime.now().isoformat(timespec="seconds"),
        summary_json=json.dumps({k: summary.get(k) for k in ("name", "board", "strategy", "study")}).replace("</", "<\\/"))
    path = write_text(out_dir / "index.html", html)
    log.info("HTML report: %s", path)
    return path
