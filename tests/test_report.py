"""The report renderer: shape, statuses, escaping of hostile target text, determinism, CLI.

Runs are built in memory with ``gaps.model`` (no server needed).  Markdown is checked by
rendering it with markdown-it (CommonMark, raw HTML allowed, as GitHub's renderer allows
some) and parsing the result, so an escape that does not hold shows up as a real element.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gaps.catalog import GAPS
from gaps.evidence import show_bytes
from gaps.model import CheckResult, GapResult, Method, RunResult, TargetInfo, Verdict
from gaps.report import (
    ReportError,
    render_html,
    render_index_html,
    render_markdown,
    render_matrix_markdown,
    templates_dir,
    write_reports,
)
from gaps.report.__main__ import main
from gaps.report.safe import md_code, md_fence, md_text
from gaps.report.view import LOG_LIMIT, SUMMARY_LIMIT

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
BACKTICKS = "``` `` ` ````"
ROOT = Path(__file__).resolve().parent.parent


# --- building runs ---------------------------------------------------------------------

def check(check_id: str, verdict: Verdict, summary: str = "", **kw) -> CheckResult:
    return CheckResult(check_id, verdict, summary or f"{check_id} {verdict}", **kw)


def hostile_run(name: str = "hostile") -> RunResult:
    """A run whose target text tries every injection the reports must defuse.

    Gap statuses: heartbeat partial (with an error flag), broadcast missing (declared),
    message-types pass with a failed conformance finding, concurrency pass (declared),
    subprotocols unknown (skipped), the rest unknown (not probed).
    """
    run = RunResult(
        target=TargetInfo(
            name=name,
            description=f"a target **bold** {SCRIPT}",
            version=f"evil 1.0 {BACKTICKS}",
            settings={"compression": "WithCompression() (off by default)",
                      "banner": IMG},
            hints={"ping_interval": 1.0, "max_message_size": 8388608.0},
        ),
        harness_version="0.1.0",
        time_scale=2.0,
        seed=42,
        started=1_700_000_000.0,
        finished=1_700_000_012.5,
        waits={"heartbeat.server-pings": 45.0, "heartbeat.reaps-silent-peer": 61.0},
    )
    run.gaps["heartbeat"] = GapResult("heartbeat", checks=[
        check("heartbeat.server-pings", Verdict.PASS, "first server Ping after 1.00 s",
              evidence={"ping_times": [1.001], "wait": 45.0}, wait=45.0, duration=1.5,
              tries=[{"verdict": "pass"}, {"verdict": "pass"}]),
        check("heartbeat.reaps-silent-peer", Verdict.FAIL,
              f"closed with Close 1000 {SCRIPT}\n# Injected heading",
              evidence={"close_code": 1000, "close_reason": SCRIPT,
                        "headers": {"Server": IMG}, "fence": BACKTICKS},
              wait=61.0),
        check("heartbeat.server-pings", Verdict.ERROR, "probe crashed: " + "x" * 2000),
    ], logs="early line\n" + "y" * (LOG_LIMIT + 100) + f"\n````\n{SCRIPT}\n{IMG}\nlast line")
    run.gaps["broadcast"] = GapResult("broadcast", checks=[
        check("broadcast.fan-out", Verdict.FAIL, "declared absent: broadcast",
              method=Method.DECLARED, source="gofr websocket.go: Manager has Get/List/Add"),
        check("broadcast.rooms", Verdict.FAIL, "declared absent: broadcast",
              method=Method.DECLARED, source="gofr websocket.go: Manager has Get/List/Add"),
        check("broadcast.scale", Verdict.PASS, "p50 3 ms, p99 9 ms at 500 clients",
              evidence={"p50_ms": 3.0, "p99_ms": 9.0}),
    ])
    run.gaps["message-types"] = GapResult("message-types", checks=[
        check(c.id, Verdict.PASS) for c in GAPS[2].checks if c.kind == "capability"
    ] + [check("message-types.ping-pong", Verdict.FAIL, f"Pong payload differs: {IMG}"),
         check("message-types.close-handshake", Verdict.NON_STRICT, "TCP closed, no Close")])
    run.gaps["concurrency"] = GapResult("concurrency", checks=[
        check("concurrency.documented", Verdict.PASS, "documented",
              method=Method.DECLARED, source="https://example.invalid/docs#concurrency"),
    ])
    run.gaps["subprotocols"] = GapResult("subprotocols", checks=[
        check("subprotocols.selects-offered", Verdict.SKIP, "no subprotocols endpoint"),
    ])
    return run


def plain_run(name: str, status_pass: bool) -> RunResult:
    run = RunResult(target=TargetInfo(name=name, version="1"), harness_version="0.1.0",
                    started=1_700_000_000.0)
    verdict = Verdict.PASS if status_pass else Verdict.FAIL
    run.gaps["heartbeat"] = GapResult("heartbeat", checks=[
        check("heartbeat.server-pings", verdict), check("heartbeat.reaps-silent-peer", verdict),
    ])
    return run


# --- parsing rendered output ------------------------------------------------------------

class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text_in: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in {"meta", "br", "hr", "img", "input", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        for tag in self.stack:
            self.text_in.setdefault(tag, []).append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def attributes(self) -> set[str]:
        return {name for _, attrs in self.tags for name in attrs}

    def hrefs(self) -> list[str]:
        return [attrs["href"] for tag, attrs in self.tags if tag == "a" and "href" in attrs]


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def markdown_to_html(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def assert_no_injection(elements: Elements) -> None:
    assert "script" not in elements.names()
    assert "img" not in elements.names()
    assert not {a for a in elements.attributes() if a.startswith("on")}


def gap_section(markdown: str, gap_id: int) -> str:
    start = markdown.index(f"### {gap_id}. ")
    return markdown[start:markdown.index("\n---\n", start)]


# --- safety -----------------------------------------------------------------------------

def test_html_contains_no_element_from_target_text() -> None:
    html = render_html(hostile_run())
    elements = parse(html)
    assert_no_injection(elements)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Self-contained: no external resource, no script at all.
    assert not any("src" in attrs for _, attrs in elements.tags)
    assert all(h.startswith("#") for h in elements.hrefs())
    assert "link" not in elements.names()


def test_index_html_contains_no_element_from_target_text() -> None:
    html = render_index_html([(hostile_run(f"x{SCRIPT}{IMG}"), "x")])
    assert_no_injection(parse(html))


def test_markdown_keeps_target_text_in_code_and_fences() -> None:
    markdown = render_markdown(hostile_run())
    elements = parse(markdown_to_html(markdown))
    assert_no_injection(elements)
    # The close reason and header survive as text, inside code or escaped prose.
    code_text = "".join(elements.text_in.get("code", []))
    assert SCRIPT in code_text and IMG in code_text
    # The summary's line break cannot start a heading.
    headings = "".join(t for h in ("h1", "h2", "h3") for t in elements.text_in.get(h, []))
    assert "Injected" not in headings
    assert "bold" not in "".join(elements.text_in.get("strong", []))


def test_markdown_and_matrix_survive_hostile_target_name() -> None:
    name = f"a|b]({SCRIPT}) `x` {IMG}"
    markdown = render_matrix_markdown([(hostile_run(name), "a"), (plain_run("b", True), "b")])
    elements = parse(markdown_to_html(markdown))
    assert_no_injection(elements)
    # The pipe did not split the table: header and rows still have 3 + 2 cells.
    html = markdown_to_html(markdown)
    assert len(re.findall(r"<th[ >]", html)) == 5
    assert len(re.findall(r"<td[ >]", html)) == len(GAPS) * 5


@pytest.mark.parametrize("text", [
    "plain", "`", "``", "a ` b", "```js", " lead", "trail ", "`edge`", "x" + "`" * 7 + "y",
])
def test_md_code_round_trips(text: str) -> None:
    html = markdown_to_html(f"see {md_code(text)}\n")
    elements = parse(html)
    assert "".join(elements.text_in["code"]) == text


def test_md_fence_cannot_be_closed_from_inside() -> None:
    body = f"line\n```\n{SCRIPT}\n````\n{'`' * 9}\nend"
    html = markdown_to_html(f"{md_fence(body)}\n\n# after\n")
    elements = parse(html)
    assert "".join(elements.text_in["code"]) == body + "\n"
    assert "script" not in elements.names()
    assert "".join(elements.text_in["h1"]) == "after"


def test_md_text_renders_literally() -> None:
    text = f"*a* _b_ [c](d) <e> &amp; ~f~ $g$ \\ {SCRIPT}"
    html = markdown_to_html(f"x {md_text(text)}\n")
    assert parse(html).names() == {"p"}
    assert "".join(parse(html).text_in["p"]) == f"x {text}"


def test_untrusted_text_is_bounded() -> None:
    run = hostile_run()
    for text in (render_markdown(run), render_html(run)):
        assert "[truncated: " in text  # the 2000-character error summary
        assert "x" * (SUMMARY_LIMIT + 1) not in text
        assert "earlier characters omitted]" in text  # logs keep only their tail
        assert "early line" not in text
        assert "last line" in text


def test_control_and_bidi_characters_are_made_visible() -> None:
    run = plain_run("t", True)
    run.gaps["heartbeat"].checks[0].summary = "a\x1b[31mred\u202eevil"
    markdown, html = render_markdown(run), render_html(run)
    for text in (markdown, html):
        assert "\x1b" not in text and "\u202e" not in text
        assert "\\u001b" in text and "\\u202e" in text


# --- shape and statuses -----------------------------------------------------------------

def test_gap_statuses_and_icons() -> None:
    markdown = render_markdown(hostile_run())
    expected = {1: "⚠️ Partial", 2: "❌ Missing", 3: "✅ Pass", 6: "✅ Pass", 9: "❔ Unknown",
                4: "❔ Unknown"}
    for gap_id, status in expected.items():
        assert f"**Status**: {status}" in gap_section(markdown, gap_id), gap_id
    assert "⛔ error: " in gap_section(markdown, 1)
    assert "not probed by this version" in gap_section(markdown, 4)
    html = render_html(hostile_run())
    assert 'class="gap st-partial" id="gap-1"' in html
    assert 'class="gap st-missing" id="gap-2"' in html


def test_seed_shape_and_header() -> None:
    markdown = render_markdown(hostile_run())
    section = gap_section(markdown, 1)
    for heading in ("### 1. **Ping/Pong Heartbeat**", "**Priority**: High",
                    "**Description**: ", "**Current State**:", "**Recommended Solution**:"):
        assert heading in section
    assert GAPS[0].recommended[0] in section
    summary = markdown[markdown.index("## Summary"):]
    assert summary.index("### High Priority Gaps") < summary.index("### Medium Priority Gaps") \
        < summary.index("### Low Priority Gaps")
    # Top-down: title, target and version, the run, the table of the fourteen gaps; then
    # the gaps; the summary by priority; the run's details last, as an appendix.
    assert markdown.index("# WebSocket Gap Analysis") < markdown.index("**Target**: `hostile`") \
        < markdown.index("**Run**: 2023-11-14 22:13:20 UTC, took 12.5 s") \
        < markdown.index("## Gaps at a glance") < markdown.index("## Identified Gaps") \
        < markdown.index("## Summary") < markdown.index("## Run details")
    appendix = markdown[markdown.index("## Run details"):]
    for fact in ("WithCompression() (off by default)", "`ping_interval`: 1",
                 "`max_message_size`: 8388608", "`heartbeat.server-pings`: 45 s",
                 "**Time scale**: \u00d72", "**Seed**: 42", "wsgaps `0.1.0`", "managed",
                 "took 12.5 s"):
        assert fact in appendix, fact
    assert "`heartbeat.server-pings`: 45 s" not in markdown[:markdown.index("## Summary")]


def test_summary_table_at_the_top() -> None:
    markdown = render_markdown(hostile_run())
    table = markdown[markdown.index("## Gaps at a glance"):markdown.index("## Identified Gaps")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "[" in line]
    assert len(rows) == len(GAPS)
    assert rows[0] == ("| 1 | [Ping/Pong Heartbeat](#gap-1) | High | ⚠️ Partial ⛔ | 1/2 | fails: "
                       "`heartbeat.reaps-silent-peer` · ⛔ a check could not complete |")
    assert "| 2 | [Broadcast and Rooms](#gap-2) | High | ❌ Missing | 0/2 | every check fails |"\
        in rows[1]
    assert "| ✅ Pass | 5/5 | every check passes |" in rows[2]
    assert rows[3].endswith("| ❔ Unknown | - | not probed by this version |")
    assert rows[8].endswith("| ❔ Unknown | - | nothing applicable was probed: every check "
                            "was skipped on this target |")
    html = render_html(hostile_run())
    glance = html[html.index('id="at-a-glance"'):html.index('id="gaps"')]
    assert glance.count('<a href="#gap-') == len(GAPS)
    assert '<tr class="st-partial"><td class="num">1</td>' in glance
    assert "<code>heartbeat.reaps-silent-peer</code>" in glance
    assert html.index('id="at-a-glance"') < html.index('id="gap-1"') \
        < html.index('id="summary"') < html.index('id="run-details"')
    # The waits fold away in HTML: each check shows its own wait.
    details = html[html.index('id="run-details"'):]
    assert '<details class="waits"><summary>' in details
    assert "<code>heartbeat.server-pings</code></th><td>45 s</td>" in details


def test_conformance_findings_and_figures_are_listed() -> None:
    markdown = render_markdown(hostile_run())
    section = gap_section(markdown, 3)
    findings = section[section.index("**Conformance findings**"):]
    assert "❌ **fail** `message-types.ping-pong`" in findings
    assert "☑️ **non-strict** `message-types.close-handshake`: TCP closed, no Close" in findings
    figures = gap_section(markdown, 2)
    assert "**Figures**" in figures and "`p99_ms=9.0`" in figures
    assert "`close_code=1000`" in gap_section(markdown, 1)


def test_declared_facts_are_marked_declared() -> None:
    run = hostile_run()
    markdown = render_markdown(run)
    assert ("📄 **declared** (source: `gofr websocket.go: Manager has Get/List/Add`)"
            in gap_section(markdown, 2))
    assert "📄 **declared**" not in gap_section(markdown, 3)
    html = render_html(run)
    assert "📄" not in html  # an icon that needs no emoji font
    assert re.search(r'<span class="declared"><svg [^>]*>.*?</svg> declared</span> source: '
                     r'<code>https://example.invalid', html)


def test_skipped_target_shows_reason() -> None:
    run = plain_run("t", True)
    run.target.skipped = "build failed: npm ci exited 1\nnpm ERR! " + SCRIPT
    markdown, html = render_markdown(run), render_html(run)
    assert "> **⏭️ Target skipped**: build failed: npm ci exited 1" in markdown
    assert "npm ERR!" in markdown and "npm ERR!" in html
    assert_no_injection(parse(html))


# --- matrix -----------------------------------------------------------------------------

def test_matrix_links_every_cell_of_two_targets() -> None:
    runs = [(plain_run("alpha", True), "alpha"), (plain_run("beta", False), "beta")]
    markdown = render_matrix_markdown(runs)
    for gap in GAPS:
        row = next(line for line in markdown.splitlines()
                   if line.startswith(f"| {gap.id} | "))
        assert f"](alpha/gap-report.md#gap-{gap.id})" in row
        assert f"](beta/gap-report.md#gap-{gap.id})" in row
    assert "[✅ Pass](alpha/gap-report.md#gap-1)" in markdown
    assert "[❌ Missing](beta/gap-report.md#gap-1)" in markdown
    hrefs = parse(render_index_html(runs)).hrefs()
    for gap in GAPS:
        assert f"alpha/gap-report.html#gap-{gap.id}" in hrefs
        assert f"beta/gap-report.html#gap-{gap.id}" in hrefs
    assert "alpha/gap-report.md" in hrefs


# --- writing and determinism ------------------------------------------------------------

def write_results(folder: Path, run: RunResult) -> Path:
    path = folder / run.target.name / "results.json"
    run.write(path)
    return path


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    run = hostile_run()
    assert render_markdown(run) == render_markdown(hostile_run())
    assert render_html(run) == render_html(hostile_run())
    files = [write_results(tmp_path / "in", hostile_run("one")),
             write_results(tmp_path / "in", plain_run("two", True))]
    first = write_reports(files, tmp_path / "a")
    second = write_reports(list(reversed(files)), tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == \
        [p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_write_reports_beside_results_by_default(tmp_path: Path) -> None:
    files = [write_results(tmp_path, plain_run("one", True)),
             write_results(tmp_path, plain_run("two", False))]
    written = write_reports(files)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert names == {"one/gap-report.md", "one/gap-report.html", "two/gap-report.md",
                     "two/gap-report.html", "matrix.md", "summary.md", "index.html"}
    assert all(p.is_file() for p in written)


def test_write_reports_out_dir_makes_names_path_safe(tmp_path: Path) -> None:
    path = write_results(tmp_path / "in", plain_run("x", True))
    data = json.loads(path.read_text())
    data["target"]["name"] = "../../etc/passwd"
    path.write_text(json.dumps(data))
    written = write_reports([path], tmp_path / "out")
    assert all(p.is_relative_to(tmp_path / "out") for p in written)
    assert (tmp_path / "out" / "etc-passwd" / "gap-report.md").is_file()


def test_write_reports_refuses_two_targets_on_one_folder(tmp_path: Path) -> None:
    files = [write_results(tmp_path / "a", plain_run("same", True)),
             write_results(tmp_path / "b", plain_run("same", False))]
    with pytest.raises(ReportError, match="both write reports"):
        write_reports(files, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_templates_found_in_checkout() -> None:
    assert templates_dir() == ROOT / "templates"


# --- CLI --------------------------------------------------------------------------------

def test_cli_renders_and_prints_paths(tmp_path: Path, capsys) -> None:
    path = write_results(tmp_path, plain_run("one", True))
    assert main([str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 5
    assert {Path(p).name for p in printed} == {"gap-report.md", "gap-report.html",
                                              "matrix.md", "summary.md", "index.html"}


def test_cli_default_renders_every_reports_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    write_results(tmp_path / "reports", plain_run("one", True))
    write_results(tmp_path / "reports", plain_run("two", True))
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert (tmp_path / "reports" / "two" / "gap-report.html").is_file()
    assert "reports/matrix.md" in capsys.readouterr().out.split()


def corrupt(tmp_path: Path, kind: str) -> Path:
    path = write_results(tmp_path, plain_run("one", True))
    data = json.loads(path.read_text())
    if kind == "json":
        path.write_text('{"schema_version": 1, "gaps": [')
    elif kind == "schema":
        data["schema_version"] = 99
        path.write_text(json.dumps(data))
    elif kind == "check":
        data["gaps"][0]["checks"][0]["id"] = "heartbeat.renamed-later"
        path.write_text(json.dumps(data))
    elif kind == "missing":
        path.unlink()
    return path


@pytest.mark.parametrize("kind", ["missing", "json", "schema", "check"])
def test_cli_bad_results_file_exits_2(tmp_path: Path, kind: str, capsys) -> None:
    good = write_results(tmp_path / "good", plain_run("good", True))
    bad = corrupt(tmp_path / "bad", kind)
    assert main([str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert str(bad) in captured.err
    assert not (tmp_path / "out").exists()  # nothing written when one input is bad


def test_cli_no_results_found_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "reports/*/results.json" in capsys.readouterr().err


def test_cli_as_module_documents_exit_codes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gaps.report", "--help"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0
    assert "exit status" in done.stdout and "  2  bad input" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "gaps.report", "nope.json"],
                             capture_output=True, text=True, check=False, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "gaps.report: nope.json: no such file"


def test_matrix_marks_a_skipped_target_as_skipped() -> None:
    from gaps.model import RunResult, TargetInfo
    from gaps.report import render_index_html, render_matrix_markdown

    ran = RunResult(TargetInfo("ran"), "0.1.0", started=1.0)
    skipped = RunResult(TargetInfo("gone", skipped="build failed: 403 Forbidden\ntail"),
                        "0.1.0", started=1.0)
    markdown = render_matrix_markdown([(ran, "ran"), (skipped, "gone")])
    row = next(line for line in markdown.splitlines() if line.startswith("| 1 |"))
    assert "❔ Unknown" in row and "⏭️ Skipped" in row
    assert "skipped: build failed: 403 Forbidden" in markdown
    index = render_index_html([(ran, "ran"), (skipped, "gone")])
    assert re.search(r'<td class="cell st-skipped"><a [^>]*><svg [^>]*>.*?</svg> Skipped</a>',
                     index)


# --- evidence: text as text, hex only where it is not UTF-8 -----------------------------

@pytest.mark.parametrize(("data", "cut", "shown"), [
    (b"", False, ""),
    ("ping é 🚀 ∑".encode(), False, "ping é 🚀 ∑"),
    (b"\xff\x00\x80", False, "hex:ff0080"),
    ("aé".encode()[:2], True, "a"),  # a character broken off by a preview stays out
    ("aé".encode()[:2], False, "hex:61c3"),  # a whole payload ending mid-character is hex
])
def test_show_bytes_keeps_text_as_text(data: bytes, cut: bool, shown: str) -> None:
    assert show_bytes(data, cut=cut) == shown


def test_frame_previews_and_close_reasons_are_text_where_utf8() -> None:
    from gaps.wire.client import PREVIEW, _preview
    from gaps.wire.frames import Opcode, close_payload

    assert _preview("héllo".encode()) == "héllo"
    assert _preview(b"\x00\xff") == "hex:00ff"
    assert _preview(("é" * PREVIEW).encode()) == "é" * (PREVIEW // 2) + "..."
    # A Close frame's body: its code, then its reason as text.
    assert _preview(close_payload(1011, "keepalive ping timeout"), Opcode.CLOSE) \
        == "1011 keepalive ping timeout"
    assert _preview(close_payload(1000), Opcode.CLOSE) == "1000"


# --- what a person sees (issue 18) -------------------------------------------------------

# Emoji and other pictographs that need an emoji font: none may appear in the HTML reports,
# whose icons are inline SVG.
EMOJI = re.compile(r"[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\ufe0f\U0001f000-\U0001faff]")


def skipped_run(name: str = "gone") -> RunResult:
    run = plain_run(name, True)
    run.gaps = {}
    run.__post_init__()
    run.target.skipped = "build failed with exit status 1: npm ERR! 403\nnpm ERR! 403 Forbidden"
    run.target.build = "failed"
    for gap in run.gaps.values():
        gap.note = "target skipped: build failed with exit status 1: npm ERR! 403"
    return run


def every_status_runs() -> list[tuple[RunResult, str]]:
    """Targets whose cells show every status: pass, partial, missing, unknown, skipped, and
    a gap with an error flag."""
    return [(plain_run("alpha", True), "alpha"), (hostile_run("beta"), "beta"),
            (plain_run("gamma", False), "gamma"), (skipped_run(), "gone")]


def test_html_reports_need_no_emoji_font() -> None:
    runs = every_status_runs()
    pages = [render_index_html(runs)] + [render_html(run) for run, _ in runs]
    for html in pages:
        assert not EMOJI.findall(html)
        assert "data:" not in html  # the content policy forbids data: URIs
    index = render_index_html(runs)
    cells = re.findall(r'<td class="cell st-([a-z]+)"><a [^>]*><svg [^>]*>.*?</svg> (\w+)</a>',
                       index)
    assert len(cells) == len(GAPS) * len(runs)
    assert {status for status, _ in cells} == {"pass", "partial", "missing", "unknown",
                                               "skipped"}
    assert all(word.lower() == status for status, word in cells)
    assert '<span class="error" title="a check could not complete"><svg' in index


def test_every_status_has_its_own_colour_rule() -> None:
    css = (templates_dir() / "report.css").read_text()
    colours = {}
    for status in ("pass", "partial", "missing", "unknown", "skipped"):
        rule = re.search(rf"\.st-{status} \{{ --st: var\(--(\w+)\); --st-bg: var\(--([\w-]+)\)",
                         css)
        assert rule, status
        values = tuple(re.search(rf"--{name}: (#[0-9a-f]{{6}})", css).group(1)
                       for name in rule.groups())
        colours[status] = values
    assert len(set(colours.values())) == 5  # text and background pairs all differ
    assert len({text for text, _ in colours.values()}) == 5
    assert "td.cell a { color: inherit;" in css  # links take the status colour


def test_skipped_target_reads_skipped_everywhere() -> None:
    from gaps.summary import render_summary

    run = skipped_run()
    markdown, html = render_markdown(run), render_html(run)
    assert markdown.count("**Status**: ⏭️ Skipped") == len(GAPS)
    assert "Unknown" not in markdown.split("## Identified Gaps")[1]
    assert "- **Build**: failed" in markdown and "<dt>Build</dt><dd>failed" in html
    assert "**Gaps**: Skipped 14" in markdown
    # The reason once, at the top, before the target's facts.
    for text in (markdown, html):
        assert text.count("npm ERR! 403") == 2  # the first line, and the output below it
        assert text.index("Target skipped") < text.index('id="at-a-glance"' if text is html
                                                         else "## Gaps at a glance")
        assert "target skipped: build failed" not in text
    # Each gap twice: in the table at the top and at the gap.
    assert html.count('<span class="status"><svg') == 2 * len(GAPS)
    assert len(re.findall(r'<span class="status"><svg [^>]*>.*?</svg> Skipped</span>', html)) \
        == 2 * len(GAPS)
    assert markdown.count("| ⏭️ Skipped | - | the target could not run here") == len(GAPS)
    terminal = render_summary(run)
    assert terminal.count("skipped") == len(GAPS) + 1  # each gap, and the reason line
    assert "unknown" not in terminal and terminal.count("build failed with exit status") == 1


def test_matrix_and_index_carry_run_date_and_harness_version() -> None:
    early, late = plain_run("a", True), plain_run("b", True)
    late.started, late.harness_version = 1_700_003_600.0, "0.2.0"
    runs = [(late, "b"), (early, "a")]
    markdown, html = render_matrix_markdown(runs), render_index_html(runs)
    assert "Run started 2023-11-14 22:13:20 UTC · wsgaps `0.1.0, 0.2.0`" in markdown
    assert "Run started 2023-11-14 22:13:20 UTC · wsgaps <code>0.1.0, 0.2.0</code>" in html
    for text in (markdown, html):
        assert "run started 2023-11-14 23:13:20 UTC" in text  # each target's own start
    # The results' time, never the time of rendering.
    assert render_index_html(runs) == html and render_matrix_markdown(runs) == markdown


def test_target_reports_link_back_to_the_matrix(tmp_path: Path) -> None:
    written = write_reports([write_results(tmp_path, plain_run("one", True))])
    html = (tmp_path / "one" / "gap-report.html").read_text()
    markdown = (tmp_path / "one" / "gap-report.md").read_text()
    assert '<a href="../index.html">' in html
    assert markdown.startswith("[← All targets: the gap matrix](../matrix.md)")
    assert {tmp_path / "index.html", tmp_path / "matrix.md"} <= set(written)
    # A report rendered on its own has no link to a matrix that may not exist.
    assert "../index.html" not in render_html(plain_run("one", True))


def test_evidence_leaves_out_nulls_and_keeps_digests_whole() -> None:
    digest = "ab" * 32
    run = plain_run("t", True)
    run.gaps["heartbeat"].checks[0].evidence = {
        "close_code": None, "reason": "bye", "nested": {"gone": None, "kept": 1},
        "frames": [[0.1, "in", None]], "sent_sha256": digest}
    markdown, html = render_markdown(run), render_html(run)
    for text in (markdown, unescape(html)):
        assert "close_code" not in text and "gone" not in text
        assert "kept" in text and '"in",null' in text  # list positions stay
        assert f"sent_sha256={json.dumps(digest)}" in text


def test_long_settings_are_shown_whole() -> None:
    run = plain_run("t", True)
    value = "uvicorn --lifespan off " + "because starlette would otherwise " * 9 + "end"
    assert len(value) > 300
    run.target.settings = {"lifespan_setting_with_a_long_key": value}
    assert value in render_markdown(run)
    assert f"<td>{value}</td>" in render_html(run)
    css = (templates_dir() / "report.css").read_text()
    assert "table.entries th { white-space: nowrap; }" in css


def test_summary_lists_only_gaps_that_do_not_pass() -> None:
    markdown = render_markdown(hostile_run())
    summary = markdown[markdown.index("## Summary"):]
    assert "Ping/Pong Heartbeat](#gap-1): Partial" in summary
    assert "Broadcast and Rooms](#gap-2): Missing" in summary
    assert "(#gap-3)" not in summary and "(#gap-6)" not in summary  # both pass
    html = render_html(hostile_run())
    html_summary = html[html.index('id="summary"'):]
    assert 'href="#gap-1"' in html_summary and 'href="#gap-3"' not in html_summary
    passing = plain_run("p", True)
    passing.gaps = {"heartbeat": passing.gaps["heartbeat"]}
    passing.__post_init__()
    for gap in GAPS[1:]:
        passing.gaps[gap.slug].checks = [check(c.id, Verdict.PASS) for c in gap.checks]
    summary = render_markdown(passing).split("## Summary")[1]
    assert "none: all 3 High priority gaps pass" in summary
    assert "](#gap-" not in summary


def recommended_part(section: str) -> str:
    part = section[section.index("**Recommended Solution**"):]
    return part.split("**Evidence**")[0]


def test_recommendation_names_the_failed_checks() -> None:
    markdown = render_markdown(hostile_run())
    recommended = recommended_part(gap_section(markdown, 1))
    assert "- Make the failed checks pass:" in recommended
    assert "  - `heartbeat.reaps-silent-peer`: checks that " in recommended
    assert "`heartbeat.server-pings`" not in recommended  # it passed (and erred once)
    recommended = recommended_part(gap_section(markdown, 3))
    assert "`message-types.ping-pong`" in recommended  # a failed conformance finding
    assert "`message-types.close-handshake`" not in recommended  # non-strict counts as pass
    html = render_html(hostile_run())
    assert re.search(r'<ul class="failed">\s*<li><code>heartbeat.reaps-silent-peer</code>', html)
    assert "Make the failed checks pass" not in gap_section(markdown, 6)


def test_readme_gaps_commands_work_as_typed() -> None:
    readme = (ROOT / "README.md").read_text()
    # Commands typed in the checkout; "In your own project" is about a user's environment.
    readme = re.sub(r"## In your own project\n.*?\n## ", "## ", readme, flags=re.S)
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    typed = [line for line in lines if "pytest" in line]
    assert typed
    for line in typed:  # after `make report` nothing is on PATH but the system's tools
        assert line.startswith(".venv/bin/pytest "), line


# --- pytest -m gaps writes the reports ---------------------------------------------------

def gaps_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--gaps-out", str(tmp_path / "out"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_pytest_gaps_writes_reports_and_names_the_default_target(tmp_path: Path) -> None:
    done = gaps_pytest(tmp_path, "-k", "text")  # message-types.text alone
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "no --gaps-target given, so the default target reference was probed" in done.stdout
    for name in ("reference/gap-report.md", "reference/gap-report.html", "matrix.md",
                 "index.html"):
        assert (tmp_path / "out" / name).is_file(), name
    ours = [line for line in done.stdout.splitlines() if line.startswith("wsgaps")]
    assert ours[-1] == f"wsgaps report: {tmp_path / 'out' / 'index.html'}"


def test_pytest_gaps_with_a_skipped_target(tmp_path: Path) -> None:
    target = tmp_path / "t" / "target.toml"
    target.parent.mkdir()
    target.write_text('name = "no-runtime"\n[start]\ncommand = ["wsgaps-no-such-runtime"]\n'
                      'requires = ["wsgaps-no-such-runtime"]\n[endpoints.echo]\npath = "/"\n')
    done = gaps_pytest(tmp_path, "--gaps-target", str(target))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "default target" not in done.stdout
    assert done.stdout.count("│ skipped") == len(GAPS)
    assert "unknown" not in done.stdout
    report = (tmp_path / "out" / "no-runtime" / "gap-report.md").read_text()
    assert "- **Build**: no build step" in report
    assert report.count("wsgaps-no-such-runtime not found on PATH") == 1


def test_observed_and_declared_apart_and_a_contradiction_stands_out() -> None:
    run = plain_run("t", True)
    declared_absent = {"verdict": "fail", "source": "ws lib/websocket-server.js: no ping timer",
                       "summary": "declared absent: heartbeat"}
    run.gaps["heartbeat"].checks = [
        check("heartbeat.server-pings", Verdict.FAIL, "no Ping within 65.0 s",
              declaration=declared_absent),
        check("heartbeat.reaps-silent-peer", Verdict.PASS, f"closed after 2 s {SCRIPT}",
              declaration=declared_absent),
    ]
    markdown, html = render_markdown(run), render_html(run)
    section = gap_section(markdown, 1)
    assert "observed" in section and "📄 **declared**" not in section
    assert "the manifest declares: declared absent: heartbeat (source: ws lib/" in section
    assert section.count("**manifest error**") == 2  # on the check and at the gap status
    assert "heartbeat.reaps-silent-peer: the manifest declares declared absent: heartbeat, " \
           "but the wire shows pass" in section
    assert 'class="manifest-error"' in html and html.count('class="manifest-error"') == 2
    assert_no_injection(parse(html))


def test_markdown_check_items_are_separate_list_items() -> None:
    run = plain_run("t", True)
    markdown = render_markdown(run)
    assert not re.search(r"[^\n]- (✅|❌|⏭️|☑️|⛔) \*\*", markdown), "two check items on one line"
    items = re.findall(r"^- (?:✅|❌|⏭️|☑️|⛔) \*\*", markdown, re.M)
    assert len(items) == sum(len(g.checks) for g in run.gaps.values())


def test_report_logs_keep_the_head_of_a_crash_report_in_front_of_the_tail() -> None:
    head = "[stderr] fatal error: stack overflow\n" + "[stderr] goroutine 218 [running]:\n" * 50
    logs = (head + "[wsgaps: 500000 bytes skipped after the start of the first crash report "
            "above]\n" + "[stderr] goroutine 9 [select]:\n" * 3000)
    run = RunResult(TargetInfo("crashing"), "0")
    run.gaps["heartbeat"] = GapResult("heartbeat", checks=[
        check("heartbeat.server-pings", Verdict.FAIL, "no Ping")], logs=logs)
    markdown = render_markdown(run)
    assert "fatal error: stack overflow" in markdown and "goroutine 9 [select]" in markdown
    # Without a kept head, only the tail is shown, after a marker.
    run.gaps["heartbeat"].logs = "[stderr] goroutine 9 [select]:\n" * 3000
    assert "earlier characters omitted" in render_markdown(run)
    # Escapes are made before the cut: a tail of control characters stays within the bound.
    from gaps.report.view import _logs

    nul_tail = head + "[wsgaps: 9 bytes skipped after the start of the first crash report " \
        "above]\n" + "\x00" * 100_000
    assert len(_logs(nul_tail)) <= LOG_LIMIT + len(head) + 200


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_results_and_reports_are_written_with_the_umask(tmp_path: Path, umask: int) -> None:
    # mkstemp makes 0600 files: an artifact server or a colleague could not read the reports.
    code = ("import sys; from pathlib import Path; from gaps.model import RunResult, TargetInfo;"
            "RunResult(TargetInfo('one'), '0.1.0').write(Path(sys.argv[1]))")
    results = tmp_path / "one" / "results.json"
    subprocess.run([sys.executable, "-c", code, str(results)], check=True, umask=umask)
    subprocess.run([sys.executable, "-m", "gaps.report", str(results)], check=True,
                   umask=umask, capture_output=True)
    written = [results, *(tmp_path / "one").glob("gap-report.*"), tmp_path / "matrix.md",
               tmp_path / "index.html"]
    assert len(written) == 5
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def recovery_run() -> RunResult:
    """websockets' recovery as the matrix saw it: three capability checks pass, the optional
    resume fails, and the evidence-only jitter reads fail (two runs agreed)."""
    run = plain_run("ws", True)
    run.gaps["recovery"] = GapResult("recovery", checks=[
        check("recovery.retries-first-dial", Verdict.PASS),
        check("recovery.redials-after-drop", Verdict.PASS),
        check("recovery.backoff", Verdict.PASS),
        check("recovery.jitter", Verdict.FAIL, "no jitter: two runs agree within 10%",
              evidence={"spread": 0.04}),
        check("recovery.resume", Verdict.FAIL, "nothing replayed after the redial"),
    ])
    return run


def test_an_optional_failure_is_said_and_not_a_task() -> None:
    from gaps.summary import render_summary

    run = recovery_run()
    markdown, html = render_markdown(run), render_html(run)
    section = gap_section(markdown, 11)
    assert "**Status**: ✅ Pass · checks passed 3/3 (+1 optional)" in section
    assert "❌ **fail** *(optional: does not lower the status)* `recovery.resume`" in section
    assert "Make the failed checks pass" not in recommended_part(section)
    row = next(line for line in markdown.splitlines() if line.startswith("| 11 |"))
    assert row.endswith("| ✅ Pass | 3/3 (+1 optional) | every check passes; optional, not "
                        "met: `recovery.resume` |")
    gap = html[html.index('id="gap-11"'):html.index('id="gap-12"')]
    assert '<span class="optional">optional: does not lower the status</span>' in gap
    assert "<dt>Checks passed</dt><dd>3/3 (+1 optional)</dd>" in gap
    assert "Make the failed checks pass" not in gap
    assert "3/3 (+1 optional)" in render_summary(run, width=200)
    # A passing optional check counts like any other.
    run.gaps["recovery"].checks[-1].verdict = Verdict.PASS
    assert "checks passed 4/4" in gap_section(render_markdown(run), 11)


def test_an_evidence_only_check_shows_its_figure_not_a_verdict() -> None:
    run = recovery_run()
    figures = gap_section(render_markdown(run), 11).split("**Figures**")[1]
    assert "📊 **measured** `recovery.jitter`: no jitter: two runs agree within 10%" in figures
    assert "❌" not in figures.split("**Recommended Solution**")[0]
    html = render_html(run)
    gap = html[html.index('id="gap-11"'):html.index('id="gap-12"')]
    jitter = gap[gap.index("<h4>Figures</h4>"):gap.index("<h4>Recommended")]
    assert '<li class="check v-figure">' in jitter and "v-fail" not in jitter


def test_unknown_says_which_unknown() -> None:
    from gaps.model import NOT_SELECTED

    run = plain_run("sel", True)
    run.gaps["heartbeat"].unselected = ["heartbeat.reaps-silent-peer"]
    run.gaps["heartbeat"].checks = run.gaps["heartbeat"].checks[:1]
    run.gaps["broadcast"].note = NOT_SELECTED
    run.gaps["broadcast"].unselected = [c.id for c in GAPS[1].checks]
    run.gaps["subprotocols"] = GapResult("subprotocols", checks=[
        check("subprotocols.selects-offered", Verdict.SKIP, "no subprotocols endpoint")])
    markdown = render_markdown(run)
    rows = {int(line.split("|")[1]): line for line in markdown.splitlines()
            if line.startswith("| ") and "](#gap-" in line}
    assert rows[2].endswith("| ❔ Unknown | - | not selected |")
    assert rows[9].endswith("| ❔ Unknown | - | nothing applicable was probed: every check was "
                            "skipped on this target |")
    assert rows[4].endswith("| ❔ Unknown | - | not probed by this version |")
    assert "> **Part of the catalog**: this run probed only gap 9 (Subprotocol Negotiation); " \
        "part of gap 1 (Ping/Pong Heartbeat), as `--gap`" in markdown
    assert "Part of the catalog" not in render_markdown(plain_run("whole", True))
    heartbeat = gap_section(markdown, 1)
    assert "- `heartbeat.reaps-silent-peer`: not selected in this run" in heartbeat
    assert "not reported" not in heartbeat
    for text in (markdown, render_html(run)):
        for words in ("not probed by this version", "nothing applicable was probed",
                      "not selected"):
            assert words in text.split("Identified Gaps")[0]


def test_summary_md_is_the_matrix_without_links(tmp_path: Path) -> None:
    """For a CI job summary, where relative links go nowhere: the same cells, no link."""
    files = [write_results(tmp_path, plain_run("alpha", True)),
             write_results(tmp_path, hostile_run("beta"))]
    written = write_reports(files)
    summary = (tmp_path / "summary.md").read_text()
    assert tmp_path / "summary.md" in written and written[-1] == tmp_path / "index.html"
    matrix = (tmp_path / "matrix.md").read_text()
    assert "](" in matrix and "](" not in summary
    assert "<a" not in summary and "http" not in summary
    assert "| 1 | Ping/Pong Heartbeat | High | ✅ Pass | ⚠️ Partial ⛔ |" in summary
    assert "| 2 | Broadcast and Rooms | High | ❔ Unknown | ❌ Missing |" in summary
    assert "download\nthe job's reports artifact" in summary


# --- a crash is a finding -----------------------------------------------------------------

GO_HEAD = ("runtime: goroutine stack exceeds 1000000000-byte limit\nfatal error: stack overflow"
           "\n\nruntime stack:\n" + SCRIPT)


def crashed_run(name: str = "gofr") -> RunResult:
    run = RunResult(target=TargetInfo(name=name, version="1"), harness_version="0.1.0",
                    started=1_700_000_000.0)
    run.gaps["concurrency"] = GapResult("concurrency", checks=[
        check("concurrency.parallel-echo", Verdict.PASS),
        check("concurrency.churn", Verdict.FAIL, "the target's process ended with status 2",
              evidence={"connections": 4940, "exit_status": 2, "crash_head": GO_HEAD}),
    ], logs="[stderr] fatal error: stack overflow\n" + SCRIPT)
    return run


def test_a_crash_is_shown_at_its_gap_in_both_reports_and_marked_in_the_matrix() -> None:
    run = crashed_run()
    section = gap_section(render_markdown(run), 6)
    assert "💥 **The target's process ended** during `concurrency.churn`: exit status 2 " \
           "([target logs](#logs-6))" in section
    assert "fatal error: stack overflow" in section and '<a id="logs-6"></a>' in section
    # GoFr is built in: its expected.toml names the cause, with the source lines.
    assert "**Known cause**: gofr.dev v1.56.6" in section and "handler.go:89" in section
    assert_no_injection(parse(markdown_to_html(section)))
    html = render_html(run)
    elements = parse(html)
    assert_no_injection(elements)
    assert "#logs-6" in elements.hrefs()
    assert any(attrs.get("id") == "logs-6" for tag, attrs in elements.tags if tag == "details")
    assert "fatal error: stack overflow" in "".join(elements.text_in.get("pre", []))
    assert "Known cause" in html and "targets/gofr/expected.toml" in html
    matrix = render_matrix_markdown([(run, "gofr"), (plain_run("beta", True), "beta")])
    row = next(line for line in matrix.splitlines() if line.startswith("| 6 | "))
    assert row.count("💥 crashed (2)") == 1
    assert ">crashed</span>" in render_index_html([(run, "gofr")])


def test_a_crash_of_a_target_without_known_cause_shows_no_cause() -> None:
    run = crashed_run("someone-else")
    section = gap_section(render_markdown(run), 6)
    assert "💥 **The target's process ended**" in section and "Known cause" not in section
    quiet = plain_run("alpha", False)
    assert "💥" not in render_markdown(quiet) and "💥 crashed (" not in \
        render_matrix_markdown([(quiet, "alpha")])
