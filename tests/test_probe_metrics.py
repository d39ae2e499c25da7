"""Each metrics check tells both states apart on the reference server.

The passing state is the reference as shipped (its ``/metrics`` page); the failing ones
switch the ``metrics`` capability off (only the HTTP-only families stay, which must not
count) or a deliberately defective mode on (a gauge that never decreases, counters that
count every message twice).  Pure functions (the selector, which families count, values)
are judged on pages written here, the page the parser refuses included.
"""

from __future__ import annotations

import dataclasses

import pytest

from gaps.manifest import FieldReader, ManifestError
from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.wire.http import HttpAnswer
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import metrics as mx

aio = pytest.mark.asyncio(loop_scope="session")


@aio
async def test_connections_gauge_on_off_and_never_decreasing(full: ProbeContext) -> None:
    on = await mx.connections_gauge(full)
    assert on.verdict is Verdict.PASS, on
    assert "wsgaps_websocket_connections moved by exactly 3 and 7" in on.summary
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.connections_gauge(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "no WebSocket connections gauge" in off.summary
    # The HTTP-only families are there, and the evidence says why each did not count.
    assert any(line.startswith("wsgaps_http_requests (counter): not counted: HTTP-only")
               for line in off.evidence["families"]), off.evidence["families"]
    async with reference_ctx("--defect", "gauge-never-decreases") as ctx:
        stuck = await mx.connections_gauge(ctx)
    assert stuck.verdict is Verdict.FAIL, stuck
    assert "after the 3 clients closed, not back to" in stuck.summary


@aio
async def test_message_counters_on_off_and_twice(full: ProbeContext) -> None:
    on = await mx.message_counters(full)
    assert on.verdict is Verdict.PASS, on
    assert "moved by 20 and 50" in on.summary
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.message_counters(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "no WebSocket received and sent message counter" in off.summary
    async with reference_ctx("--defect", "counts-twice") as ctx:
        twice = await mx.message_counters(ctx)
    assert twice.verdict is Verdict.FAIL, twice
    assert "moved by 40 for 20 messages" in twice.summary


@aio
async def test_errors_and_latency_on_and_off(full: ProbeContext) -> None:
    on = await mx.errors_and_latency(full)
    assert on.verdict is Verdict.PASS, on
    assert on.summary.startswith("wsgaps_websocket_errors moved on the protocol error and "
                                 "wsgaps_websocket_connection_duration_seconds counted")
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.errors_and_latency(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "error counter and latency histogram" in off.summary
    # The upgrade's response-time histogram is HTTP-only: named, and not counted.
    assert any(line.startswith("wsgaps_http_request_duration_seconds (histogram): not "
                               "counted: HTTP-only") for line in off.evidence["families"])


# -- observed before declared ----------------------------------------------------------------


@aio
async def test_a_declared_absence_never_hides_a_metrics_endpoint() -> None:
    manifest = reference_manifest()
    manifest = dataclasses.replace(manifest, absent={**manifest.absent,
                                                     "metrics": "declared absent (test)"})
    async with reference_ctx(manifest=manifest) as ctx:
        result = await mx.errors_and_latency(ctx)
    assert result.method is Method.OBSERVED, result
    assert result.verdict is Verdict.PASS, result
    assert result.declaration is not None and result.declaration["verdict"] == "fail"


# -- the exposition: parsers, failures, values -------------------------------------------------


class FakeCtx:
    """Just what ``scrape`` uses of a ProbeContext: one canned answer to every GET."""

    def __init__(self, answer: HttpAnswer) -> None:
        self.answer = answer
        self.gets: list[tuple[tuple[str, str], ...]] = []

    def scaled(self, seconds: float) -> float:
        return seconds

    async def http_get(self, endpoint: str, *, wait: float, max_body: int,
                       headers: tuple[tuple[str, str], ...] = ()) -> HttpAnswer:
        self.gets.append(headers)
        return self.answer


def _answer(body: bytes, content_type: str = "text/plain; version=0.0.4",
            status: int = 200) -> HttpAnswer:
    return HttpAnswer("http://127.0.0.1:1/metrics", status=status, reason="OK",
                      headers=[("Content-Type", content_type)], body=body)


PAGE = b"""# HELP app_ws_messages_total WebSocket messages
# TYPE app_ws_messages_total counter
app_ws_messages_total{dir="in"} 5
app_ws_messages_total{dir="out"} 7
# HELP app_http_response Response time of HTTP requests in seconds.
# TYPE app_http_response histogram
app_http_response_bucket{le="+Inf"} 4
app_http_response_sum 0.5
app_http_response_count 4
# HELP open_sockets Open WebSocket connections
# TYPE open_sockets gauge
open_sockets 2
"""


@aio
async def test_scrape_parses_text_and_asks_for_openmetrics_first() -> None:
    ctx = FakeCtx(_answer(PAGE))
    scraped = await mx.scrape(ctx)  # type: ignore[arg-type]
    assert scraped.ok and scraped.parser == "prometheus_client.parser"
    assert ctx.gets[0][0][0] == "Accept"
    assert ctx.gets[0][0][1].startswith("application/openmetrics-text")
    assert mx.value_of(scraped, mx.Selector("app_ws_messages")) == 12
    assert mx.value_of(scraped, mx.parse_selector('app_ws_messages_total{dir="in"}')) == 5
    assert mx.value_of(scraped, mx.Selector("app_http_response")) == 4  # the _count
    assert mx.value_of(scraped, mx.Selector("nothing")) is None
    # The help says WebSocket and the name is not an HTTP one: a connections candidate.
    assert [str(s) for s in mx.candidates(scraped, "connections", {})] == ["open_sockets"]
    # One counter for both directions has no word for either: only a map can use it.
    assert mx.candidates(scraped, "received", {}) == []
    mapped = {"received": mx.parse_selector('app_ws_messages_total{dir="in"}')}
    assert mx.candidates(scraped, "received", mapped) == [mapped["received"]]
    reasons = mx.family_reasons(scraped, ("latency",), {})
    assert "app_http_response (histogram): not counted: HTTP-only" in reasons[1]


@aio
async def test_openmetrics_by_content_type_and_failures_as_evidence() -> None:
    om = b"# TYPE ws_connections gauge\nws_connections 3\n# EOF\n"
    scraped = await mx.scrape(FakeCtx(_answer(om, "application/openmetrics-text; "
                                                  "version=1.0.0")))  # type: ignore[arg-type]
    assert scraped.ok and scraped.parser == "prometheus_client.openmetrics.parser"
    assert mx.value_of(scraped, mx.Selector("ws_connections")) == 3
    # The same page without "# EOF" is not OpenMetrics: the parser's words, not a crash.
    broken = await mx.scrape(FakeCtx(_answer(om[:-6], "application/openmetrics-text")))  # type: ignore[arg-type]
    assert not broken.ok
    assert "does not parse (prometheus_client.openmetrics.parser" in broken.problem
    garbage = await mx.scrape(FakeCtx(_answer(b"ws_connections {{{ 3\n")))  # type: ignore[arg-type]
    assert not garbage.ok and "does not parse (prometheus_client.parser" in garbage.problem
    refused = await mx.scrape(FakeCtx(_answer(b"nope", status=404)))  # type: ignore[arg-type]
    assert not refused.ok and "not 200" in refused.problem


def test_selectors_and_the_manifest_key() -> None:
    assert mx.parse_selector('a_total{x="1", y="two"}') == mx.Selector(
        "a_total", (("x", "1"), ("y", "two")))
    assert str(mx.parse_selector('a{x="1"}')) == 'a{x="1"}'
    for bad in ("", "1abc", 'a{x=1}', 'a{x="1"', "a b"):
        assert mx.parse_selector(bad) is None, bad
    reader, field = FieldReader("t.toml"), "endpoints.metrics.metrics_map"
    assert mx.METRICS_MAP.read(reader, {"connections": "ws_open"}, field) == {
        "connections": mx.Selector("ws_open")}
    with pytest.raises(ManifestError, match="gauge"):
        mx.METRICS_MAP.read(reader, {"gauge": "ws_open"}, field)  # not a role
    with pytest.raises(ManifestError, match="not a family name"):
        mx.METRICS_MAP.read(reader, {"sent": "ws sent"}, field)
