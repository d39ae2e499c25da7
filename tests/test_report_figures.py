"""The matrix lists the evidence-only checks' figures per target, in column order, escaped."""

from __future__ import annotations

from gaps.model import CheckResult, GapResult, RunResult, TargetInfo, Verdict
from gaps.report.figures import figures_view
from gaps.report.render import render_index_html, render_matrix_markdown


def run(name: str, *checks: CheckResult, skipped: str | None = None) -> RunResult:
    result = RunResult(TargetInfo(name, skipped=skipped), "0.1.0", started=1.0)
    if checks:
        result.gaps["broadcast"] = GapResult("broadcast", list(checks))
    return result


SCALE = "broadcast.scale"
RUNS = [
    (run("beta", CheckResult(SCALE, Verdict.PASS, "p50 1.0 ms | p99 <b>2</b> ms")), "beta"),
    (run("alpha", CheckResult(SCALE, Verdict.SKIP, "no broadcast endpoint")), "alpha"),
    (run("gone", skipped="build failed"), "gone"),
    (run("quiet"), "quiet"),
]


def test_figures_rows_follow_the_columns() -> None:
    (row,) = figures_view(RUNS)
    assert row.id == SCALE and row.gap_id == 2
    assert [c.target for c in row.cells] == ["beta", "alpha", "gone", "quiet"]
    assert [c.verdict for c in row.cells] == ["measured", "skip", "Skipped", "not run"]
    assert row.cells[0].md_href == "beta/gap-report.md#gap-2"


def test_no_evidence_check_no_section() -> None:
    assert figures_view([(run("quiet"), "quiet")]) == ()
    assert "## Figures" not in render_matrix_markdown([(run("quiet"), "quiet")])


def test_figures_in_the_matrix_are_escaped() -> None:
    md = render_matrix_markdown(RUNS)
    html = render_index_html(RUNS)
    section = md[md.index("## Figures"):md.index("## Targets")]
    assert "p50 1.0 ms \\| p99 \\<b\\>2\\</b\\> ms" in section  # escaped
    assert section.index("[beta]") < section.index("[alpha]")
    assert "p50 1.0 ms | p99 &lt;b&gt;2&lt;/b&gt; ms" in html
    assert "<b>2</b>" not in html


def test_capability_checks_with_figures_get_a_row_after_the_evidence_checks() -> None:
    echo = "concurrency.parallel-echo"
    beta = run("beta", CheckResult(SCALE, Verdict.PASS, "p50 1.0 ms"))
    beta.gaps["concurrency"] = GapResult("concurrency", [
        CheckResult(echo, Verdict.PASS, "8136 messages/s, round trip p50 29.5 ms"),
        CheckResult("concurrency.fan-in", Verdict.PASS, "not a figure row")])
    alpha = run("alpha")
    alpha.gaps["concurrency"] = GapResult("concurrency", [
        CheckResult(echo, Verdict.FAIL, "client 0: message 2 came back while 1 was due")])
    runs = [(alpha, "alpha"), (beta, "beta")]
    rows = figures_view(runs)
    assert [r.id for r in rows] == [SCALE, echo]  # catalog order
    assert [r.capability for r in rows] == [False, True]
    assert [c.target for c in rows[1].cells] == ["alpha", "beta"]  # column order
    assert [c.verdict for c in rows[1].cells] == ["fail", "pass"]
    assert rows[1].cells[1].md_href == "beta/gap-report.md#gap-6"
    md = render_matrix_markdown(runs)
    section = md[md.index("## Figures"):md.index("## Targets")]
    assert "concurrency.parallel-echo`: 50 clients x 200 messages echo intact, in order " \
           "(capability check)" in section
    assert "8136 messages/s, round trip p50 29.5 ms" in section
    assert "not a figure row" not in section
    assert "(capability check)</h3>" in render_index_html(runs)


def test_an_evidence_only_check_shows_its_figures_not_a_verdict_icon() -> None:
    """broadcast.scale can only pass or skip: a green tick would claim a verdict it has no
    weight for.  In the matrix and in the target's report it reads as measured figures; a
    capability check beside it keeps its verdict."""
    from gaps.report import render_html, render_markdown

    (row,) = figures_view(RUNS)
    assert (row.cells[0].icon, row.cells[0].verdict) == ("📊", "measured")
    assert (row.cells[1].icon, row.cells[1].verdict) == ("⏭️", "skip")  # no figure: said so
    section = render_matrix_markdown(RUNS)
    section = section[section.index("## Figures"):section.index("## Targets")]
    assert "[beta](beta/gap-report.md#gap-2): 📊 measured: p50 1.0 ms" in section
    assert "✅" not in section
    beta = RUNS[0][0]
    beta.gaps["broadcast"].checks.append(CheckResult("broadcast.fan-out", Verdict.PASS, "ok"))
    markdown = render_markdown(beta)
    assert "📊 **measured** `broadcast.scale`: p50 1.0 ms" in markdown
    assert "✅ **pass** `broadcast.fan-out`" in markdown
    assert "**pass** `broadcast.scale`" not in markdown
    html = render_html(beta)
    scale = html[html.index('<code>broadcast.scale</code>') - 400:
                 html.index('<code>broadcast.scale</code>')]
    assert '<li class="check v-figure">' in scale and "measured</span>" in scale
    beta.gaps["broadcast"].checks.pop()


def test_a_figure_taken_at_the_harness_ceiling_is_marked_harness_bound() -> None:
    from gaps.report.render import render_html, render_markdown

    bound = {"p50_ms": 3.0, "harness_cpu_share": 0.97, "harness_bound": True}
    calm = {"p50_ms": 3.0, "harness_cpu_share": 0.42}
    runs = [(run("busy", CheckResult(SCALE, Verdict.PASS, "p50 3.0 ms", evidence=bound)),
             "busy"),
            (run("calm", CheckResult(SCALE, Verdict.PASS, "p50 3.0 ms", evidence=calm)),
             "calm")]
    (row,) = figures_view(runs)
    assert [c.harness_bound for c in row.cells] == ["harness CPU 97%", ""]
    md = render_matrix_markdown(runs)
    assert md.count("**harness-bound** (harness CPU 97%") == 1
    assert render_index_html(runs).count("harness-bound (harness CPU 97%)") == 1
    busy, calm_run = runs[0][0], runs[1][0]
    assert "**harness-bound** (harness CPU 97%)" in render_markdown(busy)
    assert "harness-bound (harness CPU 97%)" in render_html(busy)
    assert "harness-bound" not in render_markdown(calm_run)
    assert "harness-bound (" not in render_html(calm_run)
