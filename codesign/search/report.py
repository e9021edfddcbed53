"""Search outputs: Pareto JSON, PNG plots (front, per-layer design), markdown report, console table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from codesign.atomic import atomic_write, write_text

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(records: list[dict], front: list[dict], path: Path, chosen: dict | None = None,
               baselines: list[dict] | None = None, lut_limit: float | None = None) -> Path:
    """Accuracy vs LUT (colour: FPS) with the front, plus BRAM and DSP panels."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, res in zip(axes, ("LUT", "BRAM_18K", "DSP")):
        xs = [r.get(res) or 0 for r in records]
        ys = [r["accuracy"] for r in records]
        sc = ax.scatter(xs, ys, c=[r.get("fps") or 0 for r in records], cmap="viridis", s=22, alpha=0.7,
                        label="trained (short QAT)")
        if res == "LUT":
            fs = sorted(front, key=lambda r: r["LUT"])
            ax.plot([r["LUT"] for r in fs], [r["accuracy"] for r in fs], "r-o", ms=4, label="Pareto front")
            if lut_limit:
                ax.axvline(lut_limit, color="k", ls="--", lw=1, label="LUT budget")
            fig.colorbar(sc, ax=ax, label="FPS")
        for b in baselines or []:
            if b.get("accuracy") is not None:
                ax.scatter([b.get(res) or 0], [b["accuracy"]], marker="s", s=60, edgecolor="k",
                           label=f"{b['name']} (full QAT)")
        if chosen:
            ax.scatter([chosen.get(res) or 0], [chosen["accuracy"]], marker="*", s=220, c="gold", edgecolor="k",
                       label="chosen (full QAT)")
        ax.set_xlabel(res)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("co-design search: accuracy vs resources")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def plot_design(design: dict, per_layer: dict, path: Path) -> Path:
    """Per layer: weight/activation bits, kept fraction after pruning, LUT and BRAM."""
    plt = _plt()
    layers = list(per_layer)
    w = [design["weight_bits"][n] for n in layers]
    a = [design["act_bits"].get(n, 0) for n in layers]
    keep = [1 - (design.get("prune") or {}).get(n, 0.0) for n in layers]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x = range(len(layers))
    axes[0].bar([i - 0.2 for i in x], w, 0.4, label="weight bits")
    axes[0].bar([i + 0.2 for i in x], a, 0.4, label="act bits")
    axes[0].set_title("bits")
    axes[0].legend(fontsize=8)
    axes[1].bar(list(x), keep, color="tab:green")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("kept units (1 - prune ratio)")
    axes[2].bar([i - 0.2 for i in x], [per_layer[n]["LUT"] for n in layers], 0.4, label="LUT")
    ax2 = axes[2].twinx()
    ax2.bar([i + 0.2 for i in x], [per_layer[n]["BRAM_18K"] for n in layers], 0.4, color="tab:orange", label="BRAM18")
    axes[2].set_title("resources (LUT left, BRAM18 right)")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(layers, rotation=30)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:,.0f}" if v > 100 else f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _md(v: Any) -> str:
    """A cell value with markdown's column separator escaped."""
    return (_fmt(v) if not isinstance(v, str) else v).replace("|", "\\|")


def comparison_rows(summary: dict) -> list[dict]:
    rows = []
    ch = summary.get("chosen")
    if ch:
        rows.append({"design": f"chosen ({summary['strategy']})", **ch})
    for b in summary.get("baselines", []):
        rows.append({"design": f"uniform {b['name']}", **b})
    return rows


def write_markdown(summary: dict, path: Path) -> Path:
    """report.md: settings, the chosen design vs the baselines, per-layer table, the front."""
    lines = [f"# Co-design report: {summary['name']}", "",
             f"Board **{summary['board']}**, clock {summary['clock_ns']} ns, target "
             f"{_fmt(summary.get('target_fps'))} FPS, limits: {summary['limits']}.",
             f"Strategy `{summary['strategy']}`: {summary.get('stop_reason', '')}; "
             f"{summary.get('n_trials', 0)} designs trained (short QAT), study `{summary.get('study')}`.", "",
             "## Chosen design vs baselines (full QAT, test accuracy)", "",
             "| design | test acc | fits | LUT | BRAM18 | DSP | FPS | bits / pruning |", "|---|---|---|---|---|---|---|---|"]
    for r in comparison_rows(summary):
        lines.append(f"| {r['design']} | {_fmt(r.get('test_acc'), True)} | {'yes' if r.get('feasible') else 'NO'} | "
                     f"{_fmt(r.get('LUT'))} | {_fmt(r.get('BRAM_18K'))} | {_fmt(r.get('DSP'))} | {_fmt(r.get('fps'))} | "
                     f"{_md(r.get('describe', ''))} |")
    ch = summary.get("chosen")
    if ch and ch.get("per_layer"):
        lines += ["", "## Chosen design per layer", "", "| layer | w | a | prune | PE | SIMD | cycles | LUT | BRAM18 | DSP |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        d = ch["candidate"]
        for n, p in ch["per_layer"].items():
            lines.append(f"| {n} | {d['weight_bits'][n]} | {d['act_bits'].get(n, '-')} | {d['prune'].get(n, 0):.3f} | "
                         f"{p['PE']} | {p['SIMD']} | {p['cycles']:,} | {p['LUT']:,} | {p['BRAM_18K']} | {p['DSP']} |")
        lines += ["", "![design](design.png)"]
    lines += ["", "## Pareto front (short-QAT validation accuracy)", "", "| trial | val acc | LUT | BRAM18 | DSP | FPS | design |",
              "|---|---|---|---|---|---|---|"]
    for r in summary.get("front", []):
        lines.append(f"| {r['trial']} | {_fmt(r['accuracy'], True)} | {_fmt(r['LUT'])} | {_fmt(r.get('BRAM_18K'))} | "
                     f"{_md(r.get('DSP'))} | {_fmt(r.get('fps'))} | {_md(r.get('describe', ''))} |")
    lines += ["", "![front](pareto.png)", ""]
    if summary.get("build"):
        b = summary["build"]
        lines += ["## Compiled design", "", f"Build folder `{b.get('dir')}`: estimated {_fmt(b.get('fps'))} FPS, "
                  f"LUT {_fmt(b.get('LUT'))}, BRAM18 {_fmt(b.get('BRAM_18K'))}, DSP {_fmt(b.get('DSP'))}.", ""]
    if summary.get("hw_steps"):
        lines += ["## RTL / simulation / synthesis", ""] + [f"- {k}: {v}" for k, v in summary["hw_steps"].items()] + [""]
    if summary.get("seconds"):
        lines += ["## Time", ""] + [f"- {k}: {v:.1f} s" for k, v in summary["seconds"].items()] + [""]
    return write_text(path, "\n".join(lines) + "\n")


def print_summary(summary: dict) -> None:
    """The chosen design against the baselines, as a rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{summary['name']}: {summary['board']} @ {_fmt(summary.get('target_fps'))} FPS target, "
                    f"limits {summary['limits']}")
    for col in ("design", "test acc", "fits", "LUT", "BRAM18", "DSP", "FPS", "bits / pruning"):
        t.add_column(col)
    for r in comparison_rows(summary):
        t.add_row(r["design"], _fmt(r.get("test_acc"), True), "yes" if r.get("feasible") else "NO", _fmt(r.get("LUT")),
                  _fmt(r.get("BRAM_18K")), _fmt(r.get("DSP")), _fmt(r.get("fps")), r.get("describe", ""))
    console = Console()
    if console.width < 150:
        console = Console(width=150)  # the design column is long; never wrap it into slivers
    console.print(t)
