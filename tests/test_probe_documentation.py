"""The documentation heuristic (gap 14) tells both states apart on docs written here.

Docs folders covering 11 topics pass and 10 fail, with the count; no docs, missing paths,
docs that never mention WebSocket and a failed docs fetch are ``skip`` with the reason.
Reading is bounded (size, count, binary and non-UTF-8 files, links not followed), passages
are found with their line numbers in text, docstrings and doc comments, and a hostile
passage stays text in the reports.  The docs fetch runs like a build: bounded in time,
cached, a failure kept and said; ``gaps.docfetch`` keeps an archive's members inside its
folder.
"""

from __future__ import annotations

import io
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from gaps.manifest import ManifestError, load_manifest
from gaps.model import CheckResult, Method, RunResult, TargetInfo, Verdict
from gaps.probe import OWN, ProbeContext
from gaps.report import render_html, render_markdown
from gaps.targets import Instance, docs_problem, resolve, run_docs_fetch
from wsgaps_probes import documentation as doc

aio = pytest.mark.asyncio(loop_scope="session")

# One paragraph per topic, each holding two of its terms (and WebSocket, so files count).
PARAGRAPHS = {
    "heartbeat": "The WebSocket server sends a ping; the client answers with a pong.",
    "broadcast": "Broadcast a message to all clients of a room.",
    "message-types": "Binary frames and UTF-8 text messages are both supported.",
    "connection-state": "On graceful shutdown every connection gets a close code.",
    "error-handling": "A protocol error raises an exception.",
    "concurrency": "Sending is thread-safe; concurrent reads are not.",
    "compression": "Enable permessage-deflate compression for large payloads.",
    "middleware": "A middleware can authenticate the handshake.",
    "subprotocols": "Negotiate a subprotocol with Sec-WebSocket-Protocol.",
    "limits": "The max_size limit refuses larger messages.",
    "recovery": "The client will reconnect with exponential backoff.",
    "testing-utilities": "Use the test client fixture in your tests.",
    "metrics": "Prometheus metrics expose a connections gauge.",
}


def docs_folder(tmp_path: Path, topics: list[str]) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(parents=True)
    text = "# WebSocket guide\n\n" + "\n\n".join(PARAGRAPHS[t] for t in topics) + "\n"
    (folder / "guide.md").write_text(text)
    return folder


def manifest_with(tmp_path: Path, docs: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "target.toml"
    path.write_text(textwrap.dedent("""
        name = "docs-demo"
        [start]
        command = ["{python}", "-m", "gaps.reference", "--port", "{port}"]
        [endpoints.echo]
        path = "/echo"
    """) + textwrap.dedent(docs))
    return path


def judge_folder(tmp_path: Path, topics: list[str]) -> doc.Outcome:
    docs_folder(tmp_path, topics)
    manifest = load_manifest(manifest_with(tmp_path, """
        [docs]
        source = "written by the test"
        paths = ["docs"]
    """))
    return doc.judge(manifest)


def test_eleven_topics_pass_and_ten_fail_with_the_count(tmp_path: Path) -> None:
    topics = list(PARAGRAPHS)
    eleven = judge_folder(tmp_path / "a", topics[:11])
    assert eleven.verdict is Verdict.PASS, eleven.summary
    assert eleven.summary.startswith("heuristic: 11 of 13 topics")
    assert eleven.evidence["count"] == 11
    assert eleven.evidence["missing"] == ["testing-utilities", "metrics"]
    heartbeat = eleven.evidence["topics"]["heartbeat"]
    assert (heartbeat["file"], heartbeat["line"], heartbeat["terms"]) == (
        "docs/guide.md", 3, ["ping", "pong"])
    assert eleven.evidence["best_passages"]["heartbeat"] == "docs/guide.md:3 (2 terms: ping, pong)"
    assert "heuristic" in eleven.evidence["heuristic"]
    ten = judge_folder(tmp_path / "b", topics[:10])
    assert ten.verdict is Verdict.FAIL, ten.summary
    assert ten.summary.startswith("heuristic: 10 of 13 topics")
    assert "11 needed" in ten.summary and ten.evidence["count"] == 10
    full = judge_folder(tmp_path / "c", topics)
    assert full.verdict is Verdict.PASS and full.evidence["missing"] == []


def test_one_term_alone_does_not_count(tmp_path: Path) -> None:
    folder = docs_folder(tmp_path, [])
    (folder / "guide.md").write_text("WebSocket errors.\n\nA ping.\n")
    reading = doc.read_docs([("docs", folder)])
    best = doc.best_passages(reading.passages)
    assert not best["heartbeat"].found and best["heartbeat"].score == 1
    assert best["heartbeat"].line().startswith("none counts; best docs/guide.md:3")


def test_no_docs_is_skip_with_the_reason(tmp_path: Path) -> None:
    none = doc.judge(load_manifest(manifest_with(tmp_path)))
    assert none.verdict is Verdict.SKIP and "points at no documentation" in none.summary
    missing = doc.judge(load_manifest(manifest_with(tmp_path, """
        [docs]
        source = "nowhere"
        paths = ["no-such-folder"]
    """)))
    assert missing.verdict is Verdict.SKIP
    assert "none of no-such-folder exists" in missing.summary
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.md").write_text("HTTP servers send ping and pong to keep alive.\n")
    (other / "image.png").write_bytes(b"\x89PNG\0\0")
    unrelated = doc.judge(load_manifest(manifest_with(other, """
        [docs]
        source = "docs about something else"
        paths = ["."]
    """)))
    assert unrelated.verdict is Verdict.SKIP, unrelated.summary
    assert "no readable passage that mentions WebSocket" in unrelated.summary
    assert unrelated.evidence["skipped"]["never mentions WebSocket"]["count"] >= 1


def test_reading_is_bounded_and_skips_binary_and_links(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = docs_folder(tmp_path, ["heartbeat"])
    (folder / "big.md").write_text("WebSocket ping pong\n" * 100)
    (folder / "nul.md").write_bytes(b"WebSocket ping pong\0\0")
    (folder / "latin1.md").write_bytes(b"WebSocket ping pong caf\xe9")
    outside = tmp_path / "outside.md"
    outside.write_text("WebSocket broadcast to all clients in a room\n")
    (folder / "link.md").symlink_to(outside)
    (folder / "linked").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.setattr(doc, "MAX_FILE", 1000)
    reading = doc.read_docs([("docs", folder)])
    assert reading.skipped["over 1000 bytes"] == ["docs/big.md"]
    assert reading.skipped["binary"] == ["docs/nul.md"]
    assert reading.skipped["not UTF-8 text"] == ["docs/latin1.md"]
    assert "docs/link.md" in reading.skipped["a link or not a regular file"]
    assert {p.path for p in reading.passages} == {"docs/guide.md"}  # nothing via links
    monkeypatch.setattr(doc, "MAX_FILES", 1)
    (folder / "more.md").write_text("WebSocket ping pong\n")
    stopped = doc.read_docs([("docs", folder)])
    assert stopped.files == 1 and "reading stopped at 1 files" in stopped.stopped


def test_passages_in_text_docstrings_and_doc_comments() -> None:
    rst = "Title\n=====\n\nFirst paragraph\nstill first.\n\nSecond.\n"
    assert doc.text_passages(rst) == [(4, "First paragraph\nstill first.", "Title"),
                                      (7, "Second.", "Title")]
    python = 'x = 1\n\n\ndef f():\n    """Sends a ping.\n\n    And a pong."""\n'
    assert doc.docstring_passages(python) == [(5, "Sends a ping.", "f"), (7, "And a pong.", "f")]
    later = '"""\n\nModule docs\nstart on line 3.\n"""\n'
    assert doc.docstring_passages(later) == [(3, "Module docs\nstart on line 3.", "")]
    assert doc.docstring_passages("def (:") is None
    rust = "fn a() {}\n/// Sends a ping.\n/// More.\nfn b() {}\n// not a doc comment\n"
    assert doc.comment_passages(rust, "rs") == [(2, "Sends a ping.\nMore.", "")]
    go = "package x\n\n// Ping sends a ping.\nfunc Ping() {}\n//go:generate x\n"
    assert doc.comment_passages(go, "go") == [(3, "Ping sends a ping.", "")]
    java = "class A {\n  /**\n   * Sends a ping.\n   */\n  void ping() {}\n}\n"
    assert doc.comment_passages(java, "java")[0][1] == "Sends a ping."
    words = "WebSocket\nping\npong\nbackoff\njitter\nreconnect\n"
    assert doc.word_list(words) and not doc.word_list("Ping and pong.\nThen a backoff.")


def test_hostile_passage_stays_text_in_the_reports(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    hostile = ("WebSocket ping pong <script>alert(1)</script> ```\n# Injected "
               "\u202e ![x](javascript:alert(1))")
    (folder / "evil.md").write_text(hostile + "\n")
    (folder / "<img src=x onerror=alert(1)>.md").write_text("WebSocket ping pong\n")
    outcome = doc.judge(load_manifest(manifest_with(tmp_path, """
        [docs]
        source = "hostile <b>docs</b>"
        paths = ["docs"]
    """)))
    excerpt = outcome.evidence["topics"]["heartbeat"]["excerpt"]
    assert len(excerpt) <= doc.EXCERPT + 2
    run = RunResult(TargetInfo(name="hostile"), harness_version="test")
    run.gaps["documentation"].checks.append(CheckResult(
        "documentation.coverage", outcome.verdict, outcome.summary, Method.OBSERVED,
        evidence=outcome.evidence))
    html = render_html(run)
    assert "<script>" not in html and "<img src=x" not in html and "<b>docs" not in html
    markdown = render_markdown(run)
    assert "\n# Injected" not in markdown


@aio
async def test_the_check_starts_no_instance_and_reads_the_reference_docstrings() -> None:
    manifest = resolve("reference")
    assert doc.coverage.placement is OWN and doc.coverage.needs == ()
    instance = Instance(manifest)  # never started: the check must not need it
    result = await doc.coverage(ProbeContext(manifest, instance))
    assert (result.verdict, result.method) == (Verdict.PASS, Method.OBSERVED), result.summary
    assert result.evidence["count"] >= 11
    assert instance.process is None


def test_docs_fetch_is_bounded_cached_and_a_failure_is_a_skip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSGAPS_CACHE_DIR", str(tmp_path / "cache"))
    counter = tmp_path / "runs"
    fetcher = tmp_path / "fetch.py"
    fetcher.write_text(textwrap.dedent(f"""
        import pathlib, sys
        with open({str(counter)!r}, "a") as f:
            f.write("x")
        into = pathlib.Path(sys.argv[1])
        (into / "guide.md").write_text({docs_text()!r})
    """))
    good = load_manifest(manifest_with(tmp_path, f"""
        [docs]
        source = "fetched by the test"
        fetch = ["{{python}}", {str(fetcher)!r}, "{{docs_dir}}"]
        paths = ["{{docs_dir}}"]
    """))
    assert doc.judge(good).verdict is Verdict.SKIP  # not fetched yet: said, never read
    assert "has not run" in (docs_problem(good) or "")
    assert run_docs_fetch(good) == "fetched"
    assert run_docs_fetch(good) == "cached" and counter.read_text() == "x"
    judged = doc.judge(good)
    assert judged.verdict is Verdict.PASS and judged.evidence["count"] == 13
    assert judged.evidence["topics"]["metrics"]["file"] == "{docs_dir}/guide.md"

    other = tmp_path / "failing"
    other.mkdir()
    failing = load_manifest(manifest_with(other, """
        [docs]
        source = "a registry that refuses"
        fetch = ["{python}", "-c", "import sys; print('404 Not Found'); sys.exit(3)"]
        paths = ["{docs_dir}"]
    """))
    assert run_docs_fetch(failing) == "failed"
    outcome = doc.judge(failing)
    assert outcome.verdict is Verdict.SKIP
    assert "docs fetch failed with exit status 3" in outcome.summary
    assert "404 Not Found" in outcome.evidence["fetch_output"]

    slow = tmp_path / "slow"
    slow.mkdir()
    hanging = load_manifest(manifest_with(slow, """
        [docs]
        source = "a registry that never answers"
        fetch = ["{python}", "-c", "import time; time.sleep(60)"]
        timeout = 1
        paths = ["{docs_dir}"]
    """))
    started = time.monotonic()
    assert run_docs_fetch(hanging) == "failed"
    assert time.monotonic() - started < 10
    assert "timed out after 1 s" in doc.judge(hanging).summary


def docs_text() -> str:
    return "# WebSocket\n\n" + "\n\n".join(PARAGRAPHS.values()) + "\n"


def test_docs_manifest_fields_are_checked(tmp_path: Path) -> None:
    def error(docs: str) -> str:
        with pytest.raises(ManifestError) as info:
            load_manifest(manifest_with(tmp_path, docs))
        return str(info.value)

    assert "docs.paths: missing" in error('[docs]\nsource = "x"\n')
    assert "docs.oops: unknown key" in error('[docs]\nsource = "x"\npaths = ["a"]\noops = 1\n')
    assert "unknown placeholder {port}" in error('[docs]\nsource = "x"\npaths = ["{port}"]\n')
    assert "must be relative" in error('[docs]\nsource = "x"\npaths = ["/etc"]\n')
    assert "must not leave its folder" in error(
        '[docs]\nsource = "x"\npaths = ["{docs_dir}/../x"]\n')
    assert "docs.paths: is empty" in error('[docs]\nsource = "x"\npaths = []\n')


def test_docfetch_keeps_archive_members_inside_its_folder(tmp_path: Path) -> None:
    from gaps import docfetch

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        for name, body in [("pkg-1.0/README.md", b"WebSocket"), ("pkg-1.0/../../evil.md", b"x"),
                           ("/abs.md", b"x"), ("pkg-1.0/setup.cfg", b"x"),
                           ("pkg-1.0/docs/guide.rst", b"ping")]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("pkg-1.0/docs/link.md")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    writer = docfetch.Writer(tmp_path / "out")
    for name, body in docfetch.tar_members(data.getvalue()):
        writer.add(name, body)
    kept = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert kept == ["README.md", "docs/guide.rst"]
    assert not (tmp_path / "evil.md").exists()
    assert docfetch.main(["pypi", "no-version", "--into", str(tmp_path / "x")]) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_builtin_targets_point_at_docs() -> None:
    from gaps.targets import builtin_names

    for name in builtin_names():
        manifest = resolve(name)
        assert manifest.docs is not None and manifest.docs.source, name
