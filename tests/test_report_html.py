"""RUN/report/index.html of a real tiny run (tfc on digits: trials, finalist, baseline,
compile), opened in a real browser: Debian's headless Chromium loads it from disk with the
network off, the plotly figures render (their SVG is in the DOM after the page's scripts
ran), no console error is logged, and a screenshot is written. A page with a deliberate
script error checks that the console check itself can fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codesign.config import RunConfig, _build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]  # nothing off-disk can load


def _cfg(out: Path) -> dict:
    return {"name": "tiny", "model": "tfc", "dataset": "digits", "out": str(out), "target_fps": 1_000_000,
            "train": {"epochs": 1, "max_batches": 5}, "qat": {"epochs": 1, "max_batches": 2},
            "search": {"strategy": "random", "trials": 3, "budget": {"LUT": 6000}, "weight_bits": [2, 3],
                       "act_bits": [2, 3], "prune_levels": [0.0, 0.25, 0.5],
                       "rank": {"epochs": 1, "max_batches": 2, "val_samples": 64}, "relevance": {"samples": 32},
                       "finalists": 1, "baselines": ["w2a2"]}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run folder: the page is written by finalize, as `codesign run` does."""
    from codesign.search.loop import finalize, prepare, run_trials

    out = tmp_path_factory.mktemp("report") / "run"
    ctx = prepare(_build(RunConfig, _cfg(out), "test"), out)
    summary = finalize(ctx, run_trials(ctx), compile_design=True)
    return out, summary


def _browser(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=8000",
                           *args, url], capture_output=True, text=True, timeout=180)


def _console_errors(stderr: str) -> list[str]:
    """Console messages and uncaught exceptions of the page, from Chromium's log (the page
    logs nothing on purpose, so any console line is a fault)."""
    return [ln for ln in stderr.splitlines() if "Uncaught" in ln or re.search(r":CONSOLE[:(]", ln)]


def test_report_is_written_by_the_run_and_self_contained(run):
    out, summary = run
    page = out / "report" / "index.html"
    assert page.is_file()
    html = page.read_text()
    # no network at view time: no remote scripts, styles or images
    assert not re.search(r"""<(script|link|img|iframe|object|embed)\b[^>]*\b(src|href)=["']?(https?:)?//""", html)
    # the content: chosen design, baselines, front, per-layer, relevance, verdicts, links
    ch = summary["chosen"]
    assert ch["describe"] in html and "uniform w2a2" in html
    assert all(f"<td class=\"l\">{n}</td>" in html for n in ch["per_layer"])
    assert 'id="fig-pareto"' in html and 'id="fig-design"' in html and 'id="fig-relevance"' in html
    assert "rtlsim (Verilator)" in html and "not run" in html  # this tiny run has no RTL
    for f in ("search/summary.json", "search/pareto.json", "relevance.json", "BUILD/dataflow.onnx", "qat.pt"):
        assert (out / f).is_file() and f'href="../{f}"' in html  # every artefact linked, relatively


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    out, _ = run
    url = (out / "report" / "index.html").resolve().as_uri()
    shot = out / "report" / "screenshot.png"
    r = _browser(url, tmp_path, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert dom.count('class="main-svg"') >= 3  # plotly drew the figures: the inlined JS ran
    assert not _console_errors(r.stderr), _console_errors(r.stderr)
    r = _browser(url, tmp_path, "--window-size=1400,2200", f"--screenshot={shot}")
    assert r.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _console_errors(r.stderr)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")
def test_console_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    r = _browser(bad.as_uri(), tmp_path, "--dump-dom")
    assert _console_errors(r.stderr), r.stderr[-2000:]


def test_report_without_plotly_embeds_the_pngs(run, tmp_path, monkeypatch):
    """The fallback: without plotly the matplotlib PNGs are embedded as base64."""
    import builtins

    from codesign.search import html_report

    out, summary = run
    real_import = builtins.__import__

    def no_plotly(name, *a, **k):
        if name.startswith("plotly"):
            raise ImportError("plotly hidden by the test")
        return real_import(name, *a, **k)

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    monkeypatch.setattr(builtins, "__import__", no_plotly)
    page = html_report.write_html_report(copy)
    html = page.read_text()
    assert 'src="data:image/png;base64,' in html and "main-svg" not in html and "Plotly" not in html[:5000]
