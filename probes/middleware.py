"""Gap 8, middleware: handshake authentication, origin policy, and hooks on messages.

Can an application refuse a WebSocket handshake with the stack's own hooks (a token check,
a same-origin policy), before the upgrade, and does the stack offer hooks that run on every
message?  A refusal counts only when it comes as an HTTP answer instead of the 101: a 101
followed by a Close is an accepted connection that the application then dropped, which a
browser's cross-site page (or anybody holding no token) has already opened.

Checks and verdicts:

- ``handshake-auth`` [capability], on ``secure``: three handshakes at once, with no token,
  with a wrong token, and with the right one, each the way the manifest's
  ``endpoints.secure.auth`` says the token travels (``via``: a header, a query parameter, a
  cookie or an offered subprotocol, under ``name``) and no other way.  The two without the
  right token must be refused with 401 or 403 (pass); another 4xx, or a connection closed
  without a byte of answer, is a refusal that says nothing about why (``non-strict``); a
  101 fails, and so does a 101 followed by a Close or a TCP end within ``WATCH`` seconds
  (the refusal came after the upgrade: it is named so in the summary), a 5xx, anything not
  HTTP, or no answer within the wait.  The right token must get a 101 and one message must
  echo.  ``absent.handshake-auth`` explains a target without ``secure``.
- ``origin-check`` [capability], on ``origin`` (the endpoint the target runs behind a
  same-origin policy): a handshake with ``Origin: http://evil.example`` must be refused
  (403 pass, another 4xx or a dropped connection ``non-strict``, a 101 with or without a
  Close after it, a 5xx or no answer fail), and one with the endpoint's own origin (the
  manifest's ``same_origin``, by default ``http://`` and the authority of the endpoint's
  URL, the ``Host`` the probe sends) must get a 101 and echo.  The answer to a handshake
  with no ``Origin`` at all (what non-browser clients send) is evidence beside it, never a
  verdict.  Where the stack's origin setting covers a whole server the manifest gives the
  endpoint its own server; where the stack cannot separate it, the manifest declares the
  verdict (``declared."middleware.origin-check"``) and ``origin`` is left out.
- ``origin-default`` [evidence], on ``echo`` (nothing configured): is a foreign ``Origin``
  accepted?  The figure is "accepted" (cross-site WebSocket hijacking possible by default)
  or "refused with HTTP N", with whether the 101 was followed by a Close.  It never weighs on
  the gap status; no answer at all leaves no figure (``skip`` with what happened).
- ``message-hooks`` [capability, declared]: hooks that run on every message (interceptors,
  middleware on frames or messages), which the wire cannot show: the manifest's
  ``declared."middleware.message-hooks"`` fact decides it, with its source
  (``absent.message-hooks`` is a declared fail).  Overriding the handler's own
  ``on_message`` is not a hook.

Waits (scaled by ``--gaps-time-scale``; no hint changes them): ``HANDSHAKE_WAIT`` = 10 s
for each handshake's answer, ``ECHO_WAIT`` = 10 s for an echo on an accepted connection,
``WATCH`` = 2 s after a 101 that should have been a refusal, for the Close that shows the
refusal came late.  Evidence: every handshake's request facts (how the token went, the
Origin sent) and the answer (status, bounded headers and body), and the frames of accepted
connections.  The right token never appears in the evidence (``<the right token>`` stands
for it, also where a target echoes it, e.g. as a selected subprotocol); a wrong token is
shown as sent.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from gaps.manifest import FieldReader
from gaps.model import Verdict
from gaps.probe import Outcome, ProbeContext, check, declared, manifest_key, passed, skipped
from gaps.toolkit import echo_once, expect_close
from gaps.toolkit.closing import CLOSE, TCP
from gaps.wire.client import WireClient
from gaps.wire.errors import (
    HandshakeRefused,
    HandshakeTimeout,
    MalformedAnswer,
    NoAnswer,
)
from gaps.wire.handshake import parse_url  # the rule the Host header follows

HANDSHAKE_WAIT = 10.0
ECHO_WAIT = 10.0
WATCH = 2.0  # seconds a 101 that should have been a refusal is watched for a Close
FOREIGN = "http://evil.example"
PROBE = b"wsgaps middleware probe"


@dataclass
class Knock:
    """One handshake and what became of it: refused (status), accepted (and then closed or
    not), or no HTTP answer.  ``client`` is the open connection of an accepted handshake."""

    what: str  # "no token", "origin http://evil.example", ...
    sent: dict[str, Any]
    status: int | None = None
    problem: str = ""  # why there was no HTTP answer
    dropped: bool = False  # closed without a byte of answer
    closed_after: str = ""  # a 101 followed by this ending within the watch
    client: WireClient | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status == 101

    def describe(self) -> str:
        if self.accepted:
            return "101" + (f", then {self.closed_after}" if self.closed_after else "")
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.problem

    def facts(self) -> dict[str, Any]:
        return {"what": self.what, "sent": self.sent, "answer": self.describe(),
                **self.evidence}


# -- manifest keys (the middleware probe's own) ----------------------------------------

AUTH_KEYS = {"token", "via", "name"}
AUTH_VIA = {"header", "query", "cookie", "subprotocol"}
# What ``auth.name`` means for each way the token travels, and its default: the header's
# name, the query parameter's, the cookie's, or the protocol offered (and selected) beside
# the token, which is then offered as a second protocol value ("" offers the token alone).
AUTH_NAMES = {"header": "Authorization", "query": "token", "cookie": "token",
              "subprotocol": ""}
# The origin the ``origin`` endpoint treats as its own: scheme, host and optional port.
ORIGIN = re.compile(r"^https?://[^/?#\s@]+$")


@dataclass(frozen=True)
class Auth:
    """How the right token of an endpoint travels (middleware.handshake-auth): ``token`` is
    the exact value sent (a header value such as ``Bearer abc``, a query or cookie value, or
    an offered protocol), ``via`` one of ``AUTH_VIA``, ``name`` as in ``AUTH_NAMES``."""

    token: str
    via: str = "header"
    name: str = "Authorization"


def _read_auth(r: FieldReader, data: Any, fieldname: str) -> Auth:
    table = r.table(data, fieldname, AUTH_KEYS)
    r.require(table, ("token",), fieldname)
    via = r.choice(table.get("via", "header"), f"{fieldname}.via", AUTH_VIA)
    token = r.string(table["token"], f"{fieldname}.token")
    name = r.string(table.get("name", AUTH_NAMES[via]), f"{fieldname}.name")
    if not token or any(c in token for c in "\r\n\0"):
        raise r.fail(f"{fieldname}.token", "must be a non-empty value on one line")
    if via in ("header", "query", "cookie") and not name:
        raise r.fail(f"{fieldname}.name", f"a token sent by {via} needs the {via}'s name")
    if via == "header" and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise r.fail(f"{fieldname}.name", f"{name!r} is not an HTTP header name")
    if via in ("cookie", "subprotocol") and any(c in token for c in " ,;\""):
        raise r.fail(f"{fieldname}.token", f"a token sent by {via} cannot hold spaces, "
                     "commas, semicolons or quotes")
    return Auth(token, via, name)


def _read_same_origin(r: FieldReader, value: Any, fieldname: str) -> str:
    same_origin = r.string(value, fieldname)
    r.placeholders(same_origin, fieldname)
    if not ORIGIN.match(same_origin.replace("{", "").replace("}", "")):
        raise r.fail(fieldname, f"{same_origin!r} is not an origin (http:// or https://, a "
                     "host and an optional port, no path)")
    return same_origin


SECURE_AUTH = manifest_key("secure", "auth", _read_auth, "the secure endpoint needs the right "
                           "token and how it travels (token, via, name)", required=True)
ORIGIN_AUTH = manifest_key("origin", "auth", _read_auth, "the right token of the origin "
                           "endpoint, where it wants one, and how it travels")
# The origin the endpoint's same-origin policy accepts (default the endpoint's own,
# ``http://`` and the authority its URL gives, as in ``Host``).
SAME_ORIGIN = manifest_key("origin", "same_origin", _read_same_origin,
                           "the origin the origin endpoint accepts as its own")


def credentials(auth: Auth | None, token: str | None) -> dict[str, Any]:
    """Keywords for ``ctx.connect`` that carry ``token`` the way ``auth`` says (nothing for
    ``None``): a header, a query parameter, a cookie, or an offered subprotocol."""
    if auth is None or token is None:
        return {}
    if auth.via == "header":
        return {"headers": [(auth.name, token)]}
    if auth.via == "query":
        return {"query": {auth.name: token}}
    if auth.via == "cookie":
        return {"headers": [("Cookie", f"{auth.name}={token}")]}
    return {"subprotocols": [auth.name, token] if auth.name else [token]}


def wrong_token(ctx: ProbeContext, token: str) -> str:
    """A token of the same shape that is not the right one: a scheme word in front (``Bearer
    ...``) is kept, the rest is drawn from the check's seeded RNG."""
    scheme, space, _ = token.rpartition(" ")
    for _ in range(10):  # a clash with the right token is one in 16**12 already
        wrong = f"{scheme}{space}wsgaps-wrong-{ctx.rng.randrange(16**12):012x}"
        if wrong != token:
            return wrong
    raise RuntimeError("could not draw a wrong token that differs from the right one")


RIGHT = "<the right token>"  # how the manifest's token is shown in evidence


def redacted(value: Any, secret: str | None) -> Any:
    """``value`` (strings, lists, tuples, dicts of them) with ``secret`` shown as ``RIGHT``:
    a user's real token must not end up in a report artifact."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, RIGHT)
    if isinstance(value, dict):
        return {k: redacted(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v, secret) for v in value]
    return value


async def knock(ctx: ProbeContext, endpoint: str, what: str, wait: float, watch: float, *,
                keep: bool = False, origin: str | None = None, secret: str | None = None,
                **creds: Any) -> Knock:
    """One handshake on ``endpoint``.  A 101 is watched for ``watch`` seconds (0: not at
    all) for a Close or TCP end, which makes it a refusal sent after the upgrade; ``keep``
    leaves an accepted connection open in ``client`` (for an echo).  ``secret`` (the right
    token) is never written into the evidence."""
    sent: dict[str, Any] = redacted({k: v for k, v in creds.items() if v}, secret)
    if origin is not None:
        sent["origin"] = origin
    result = Knock(what, sent)
    try:
        client = await ctx.connect(endpoint, timeout=wait, origin=origin, auto_pong=True,
                                   **creds)
    except HandshakeRefused as exc:
        result.status = exc.response.status
        result.evidence = {"handshake": redacted(exc.response.evidence(), secret)}
        return result
    except HandshakeTimeout:
        result.problem = f"no answer within {wait:.1f} s"
        return result
    except NoAnswer as exc:
        result.problem, result.dropped = f"no HTTP answer: {exc}", True
        return result
    except MalformedAnswer as exc:
        result.problem = f"malformed answer: {str(exc)[:300]}"
        return result
    result.status = 101
    result.evidence = {"handshake": redacted(client.response.evidence(), secret)}
    if watch > 0:
        # A Close or TCP end soon after the 101 is the refusal, sent after the upgrade.
        ending = await expect_close(client, (), watch)
        if ending.how in (CLOSE, TCP):
            result.closed_after = f"{ending}"
        result.evidence["after_101"] = ending.evidence()
        result.evidence.update(client.evidence(limit=10))
    if keep:
        result.client = client
    return result


def judge_refusal(knock_: Knock, best: tuple[int, ...]) -> tuple[Verdict, str]:
    """A handshake that must not be accepted: ``best`` statuses pass, another 4xx or a
    connection dropped without an answer is non-strict, anything else fails."""
    head = f"{knock_.what}: {knock_.describe()}"
    if knock_.accepted:
        if knock_.closed_after:
            return Verdict.FAIL, (f"{head}: the refusal came after the upgrade (a 101 first), "
                                  "so the connection was accepted")
        return Verdict.FAIL, f"{head}: accepted"
    if knock_.status is None:
        if knock_.dropped:
            return Verdict.NON_STRICT, f"{head} (refused without an HTTP status)"
        return Verdict.FAIL, head
    if knock_.status in best:
        return Verdict.PASS, f"{head} (refused)"
    if 400 <= knock_.status < 500:
        return Verdict.NON_STRICT, f"{head} (refused, but not with {' or '.join(map(str, best))})"
    return Verdict.FAIL, f"{head}: neither a refusal with a 4xx nor an acceptance"


async def judge_welcome(ctx: ProbeContext, knock_: Knock, wait: float) -> tuple[Verdict, str]:
    """A handshake that must be accepted, and its connection must echo."""
    head = f"{knock_.what}: {knock_.describe()}"
    if knock_.client is None:
        return Verdict.FAIL, f"{head}: not accepted"
    outcome = await echo_once(knock_.client, PROBE, wait, what="a text message")
    knock_.evidence["echo"] = {k: v for k, v in outcome.evidence.items() if k != "frames"}
    knock_.evidence.update(knock_.client.evidence(limit=10))
    if not outcome.verdict.passed:
        return Verdict.FAIL, f"{head}, but {outcome.summary}"
    return Verdict.PASS, f"{head}, echoes"


def combine(judged: list[tuple[Verdict, str]], knocks: list[Knock], **extra: Any) -> Outcome:
    """Fail if any fails, non-strict if any is, else pass; the summary leads with the worst."""
    order = {Verdict.FAIL: 0, Verdict.NON_STRICT: 1, Verdict.PASS: 2}
    worst = min((v for v, _ in judged), key=order.__getitem__)
    lines = sorted(judged, key=lambda item: order[item[0]])
    summary = "; ".join(text for _, text in lines)
    evidence = {"handshakes": [k.facts() for k in knocks], **extra}
    return Outcome(worst, summary, evidence)


# -- handshake-auth ----------------------------------------------------------------------

@check("middleware.handshake-auth", needs=("secure",), absent="handshake-auth",
       budget=HANDSHAKE_WAIT + WATCH + ECHO_WAIT + 20)
async def handshake_auth(ctx: ProbeContext) -> Outcome:
    auth = SECURE_AUTH.value(ctx.manifest)
    if auth is None:  # the manifest reader requires it; a hand-built manifest may not
        return skipped("the manifest gives no token for the secure endpoint (endpoints."
                       "secure.auth)")
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    watch = ctx.scaled(WATCH)
    echo_wait = ctx.plan_wait(ECHO_WAIT, name="echo")
    wrong = wrong_token(ctx, auth.token)
    how = f"token by {auth.via}" + (f" {auth.name!r}" if auth.name else "")
    none, bad, right = await asyncio.gather(
        knock(ctx, "secure", "no token", wait, watch),
        knock(ctx, "secure", f"a wrong {how}", wait, watch, secret=auth.token,
              **credentials(auth, wrong)),
        knock(ctx, "secure", f"the right {how}", wait, 0, keep=True, secret=auth.token,
              **credentials(auth, auth.token)),
    )
    judged = [judge_refusal(none, (401, 403)), judge_refusal(bad, (401, 403)),
              await judge_welcome(ctx, right, echo_wait)]
    return combine(judged, [none, bad, right], via=auth.via, name=auth.name, wait=wait)


# -- origin-check ------------------------------------------------------------------------

def own_origin(ctx: ProbeContext, endpoint: str) -> str:
    """The endpoint's own origin: the manifest's ``same_origin`` (placeholders filled), or
    ``http://`` (``https://`` for wss) and the authority the probe sends as ``Host``."""
    same_origin = SAME_ORIGIN.value(ctx.manifest) if endpoint == "origin" else None
    if same_origin:
        return ctx.instance.expand(same_origin)
    parsed = parse_url(ctx.url(endpoint))
    return f"{'https' if parsed.secure else 'http'}://{parsed.authority}"


@check("middleware.origin-check", needs=("origin",), absent="origin-check",
       budget=HANDSHAKE_WAIT + WATCH + ECHO_WAIT + 20)
async def origin_check(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    watch = ctx.scaled(WATCH)
    echo_wait = ctx.plan_wait(ECHO_WAIT, name="echo")
    auth = ORIGIN_AUTH.value(ctx.manifest)
    secret = auth.token if auth else None
    creds = credentials(auth, secret)  # the right token, if the endpoint wants one
    own = own_origin(ctx, "origin")
    foreign, same, bare = await asyncio.gather(
        knock(ctx, "origin", f"Origin {FOREIGN}", wait, watch, origin=FOREIGN, secret=secret,
              **creds),
        knock(ctx, "origin", f"Origin {own} (its own)", wait, 0, keep=True, origin=own,
              secret=secret, **creds),
        knock(ctx, "origin", "no Origin", wait, 0, secret=secret, **creds),
    )
    judged = [judge_refusal(foreign, (403,)), await judge_welcome(ctx, same, echo_wait)]
    outcome = combine(judged, [foreign, same, bare], own_origin=own, wait=wait)
    outcome.summary += f"; beside it, no Origin at all: {bare.describe()}"
    return outcome


# -- origin-default ----------------------------------------------------------------------

@check("middleware.origin-default", budget=HANDSHAKE_WAIT + WATCH + 20)
async def origin_default(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    watch = ctx.scaled(WATCH)
    foreign = await knock(ctx, "echo", f"Origin {FOREIGN} on echo", wait, watch,
                          origin=FOREIGN)
    evidence = {"handshakes": [foreign.facts()], "wait": wait}
    if foreign.accepted and not foreign.closed_after:
        return passed(f"a foreign Origin ({FOREIGN}) is accepted on echo, where nothing is "
                      "configured: cross-site WebSocket hijacking is possible by default",
                      accepted=True, **evidence)
    if foreign.accepted:
        return passed(f"a foreign Origin ({FOREIGN}) gets a 101 on echo, then "
                      f"{foreign.closed_after}: refused by default, after the upgrade",
                      accepted=False, **evidence)
    if foreign.status is not None:
        return passed(f"a foreign Origin ({FOREIGN}) is refused on echo with HTTP "
                      f"{foreign.status}, where nothing is configured: refused by default",
                      accepted=False, status=foreign.status, **evidence)
    return skipped(f"no figure: a handshake with a foreign Origin on echo got "
                   f"{foreign.describe()}", **evidence)


# -- message-hooks -----------------------------------------------------------------------

# Decided by the manifest's ``declared."middleware.message-hooks"`` fact (verdict, source,
# summary), or ``absent.message-hooks`` (a declared fail), or skipped.
message_hooks = declared("middleware.message-hooks", absent="message-hooks")
