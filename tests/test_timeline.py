"""The recovery timeline in the HTML report: dials drawn as inline SVG from the evidence."""

from __future__ import annotations

from gaps.report.templates import html_environment
from gaps.report.timeline import timeline_view


def render(evidence: dict) -> str:
    timeline = timeline_view(evidence)
    assert timeline is not None
    return html_environment().get_template("_timeline.html.j2").render(t=timeline)


def test_one_row_of_dials_with_the_ends_of_connections() -> None:
    timeline = timeline_view({"attempts": [[5.5, "accepted"], [6.2, "accepted"]],
                              "link_ends": [[6.19, "dropped by the upstream: TCP close"]]})
    assert timeline is not None and timeline.span == "1 s"  # from the first dial
    (row,) = timeline.rows
    dials = [m for m in row.marks if not m.end]
    assert [m.x for m in dials] == [0.0, 700.0]
    assert [m.end for m in row.marks].count(True) == 1


def test_runs_make_rows_and_nothing_to_draw_is_none() -> None:
    timeline = timeline_view({"runs": [{"attempts": [[0.1, "reset"]]},
                                       {"attempts": [[30.2, "reset"], [37.0, "reset"]]}]})
    assert timeline is not None and [r.label for r in timeline.rows] == ["run 1", "run 2"]
    assert timeline.span == "10 s"
    assert timeline_view({"attempts": []}) is None
    assert timeline_view({"intervals": [0.5]}) is None
    assert timeline_view({"attempts": [["x", "reset"], [-1, "reset"], [float("nan"), 1]]}) \
        is None


def test_untrusted_words_are_escaped_and_there_is_no_script() -> None:
    html = render({"attempts": [[0.5, "<script>alert(1)</script>"]],
                   "link_ends": [[0.6, "</title><script>x</script>"]]})
    assert "<script" not in html and "&lt;script&gt;" in html
    assert html.count("<svg") == 1 and "fill=\"#6e7781\"" in html  # unknown outcome: grey


def test_markdown_writes_each_row_out_in_words() -> None:
    from gaps import __version__
    from gaps.model import CheckResult, GapResult, RunResult, TargetInfo, Verdict
    from gaps.report import render_markdown

    evidence = {"attempts": [[2.0, "reset"], [2.5, "503"]] + [[3.0 + i, "reset"]
                                                               for i in range(20)],
                "link_ends": [[2.7, "drop`|<b>"]]}
    run = RunResult(TargetInfo("t"), __version__)
    run.gaps["recovery"] = GapResult("recovery", checks=[CheckResult(
        "recovery.backoff", Verdict.FAIL, "fixed interval", evidence=evidence)])
    text = render_markdown(run)
    line = next(li for li in text.splitlines() if "from the first dial" in li)
    assert "0.000 s reset, 0.500 s 503" in line
    words = line.split("from the first dial: ", 1)[1]
    # Target-influenced words stay inside one code span (a backtick inside: two as fence).
    assert words.startswith("``") and words.endswith("``") and "ended (drop`|<b>)" in words
    assert "(7 more)" in line  # 23 marks, 16 written out
