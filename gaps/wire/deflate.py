"""permessage-deflate (RFC 7692) for the wire client, sans I/O.

Three parts: reading a ``Sec-WebSocket-Extensions`` value (RFC 6455 9.1), judging a server's
answer against the offers the probe wrote (RFC 7692 section 7), and the codec the agreed
parameters ask for.  The probe writes any offer it likes (several, in preference order,
malformed ones too); the answer is a ``Negotiation`` value saying what was agreed, that the
offer was declined, or what is wrong with the answer.  The ``Inflater`` is strict and
bounded: it inflates with exactly the agreed server window, starts afresh per message when
the server promised no context takeover, and stops at a size bound, so a server that breaks
its promise or sends a decompression bomb is caught rather than followed.
"""

from __future__ import annotations

import enum
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAME = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"  # removed from each compressed message (RFC 7692 7.2.1)
PARAMS = ("server_no_context_takeover", "client_no_context_takeover",
          "server_max_window_bits", "client_max_window_bits")
WINDOW_VALUE = re.compile(r"[89]|1[0-5]")  # 8..15, no leading zero (RFC 7692 7.1.2.1)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
INFLATE_STEP = 64 * 1024  # bytes inflated per call, so a bomb never gets far past the bound
DEFAULT_MAX_INFLATED = 32 * 1024 * 1024


class HeaderError(ValueError):
    """A ``Sec-WebSocket-Extensions`` value that breaks the grammar of RFC 6455 9.1."""


@dataclass(frozen=True)
class Element:
    """One extension of a header value: its name and its parameters as written
    (``value`` None for a bare parameter; a quoted value unquoted)."""

    name: str
    params: tuple[tuple[str, str | None], ...] = ()

    def __str__(self) -> str:
        return "; ".join([self.name, *(k if v is None else f"{k}={v}" for k, v in self.params)])


def parse_extensions(value: str) -> list[Element]:
    """Read a header value: ``1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )``.

    Empty list elements are passed over (RFC 9110 5.6.1).  HeaderError says where the value
    breaks the grammar, including a quoted value that is not a token once unquoted.
    """
    elements: list[Element] = []
    pos, end = 0, len(value)

    def skip_ws() -> None:
        nonlocal pos
        while pos < end and value[pos] in " \t":
            pos += 1

    def token(what: str) -> str:
        nonlocal pos
        match = TOKEN.match(value, pos)
        if not match:
            got = value[pos:pos + 20] or "the end"
            raise HeaderError(f"expected {what} at {pos}, found {got!r}")
        pos = match.end()
        return match.group()

    while True:
        skip_ws()
        if pos < end and value[pos] == ",":
            pos += 1
            continue
        if pos >= end:
            break
        name = token("an extension name")
        params: list[tuple[str, str | None]] = []
        skip_ws()
        while pos < end and value[pos] == ";":
            pos += 1
            skip_ws()
            key = token("a parameter name")
            skip_ws()
            param: str | None = None
            if pos < end and value[pos] == "=":
                pos += 1
                skip_ws()
                if pos < end and value[pos] == '"':
                    param, pos = _quoted(value, pos)
                    if not TOKEN.fullmatch(param):
                        raise HeaderError(f"quoted value {param!r} of {key} is not a token "
                                          "(RFC 6455 9.1)")
                else:
                    param = token(f"a value for {key}")
                skip_ws()
            params.append((key, param))
        elements.append(Element(name, tuple(params)))
        if pos < end and value[pos] != ",":
            raise HeaderError(f"expected ',' or ';' at {pos}, found {value[pos:pos + 20]!r}")
    if not elements:
        raise HeaderError("no extension in the value")
    return elements


def _quoted(value: str, start: int) -> tuple[str, int]:
    """The unescaped text of the quoted-string at ``start`` and where it ends."""
    out, pos = [], start + 1
    while pos < len(value):
        char = value[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\" and pos + 1 < len(value):
            pos += 1
            char = value[pos]
        out.append(char)
        pos += 1
    raise HeaderError(f"unterminated quoted string at {start}")


# -- the agreement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """What both sides agreed: the window sizes (log2) each compressor may use and whether
    each side resets its context after every message."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def evidence(self) -> dict[str, Any]:
        return {"server_no_context_takeover": self.server_no_context_takeover,
                "client_no_context_takeover": self.client_no_context_takeover,
                "server_max_window_bits": self.server_max_window_bits,
                "client_max_window_bits": self.client_max_window_bits}


@dataclass(frozen=True)
class Offer:
    """One permessage-deflate offer of the probe's, as a server must read it: ``problem``
    says why a server must decline it (RFC 7692 7.1: an unknown or repeated parameter, an
    invalid value), "" when it may be accepted."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None  # True: offered without a value
    problem: str = ""

    @classmethod
    def read(cls, element: Element) -> Offer:
        values: dict[str, Any] = {}
        for key, value in element.params:
            name = key.lower()
            if not name:  # an element ``_lenient`` could not read
                return cls(problem=f"the offer breaks RFC 6455 9.1: {value}")
            if name not in PARAMS:
                return cls(problem=f"unknown parameter {key!r}")
            if name in values:
                return cls(problem=f"{key} twice")
            if name.endswith("no_context_takeover"):
                if value is not None:
                    return cls(problem=f"{key} with a value ({value!r})")
                values[name] = True
            elif value is None:
                if name == "server_max_window_bits":
                    return cls(problem=f"{key} without a value")
                values[name] = True
            elif WINDOW_VALUE.fullmatch(value):
                values[name] = int(value)
            else:
                return cls(problem=f"{key}={value!r}, not 8 to 15")
        return cls(**values)


class State(enum.StrEnum):
    AGREED = "agreed"  # the server accepted one of the offers validly
    DECLINED = "declined"  # no extension in the answer (valid: RFC 7692 5)
    INVALID = "invalid"  # the answer breaks RFC 6455 9.1 or RFC 7692 7 (``problem``)


@dataclass(frozen=True)
class Negotiation:
    """The outcome of an offer: what was offered and answered, and what it amounts to.

    ``agreed`` holds the parameters both sides use (AGREED only); ``offer`` is the index
    of the permessage-deflate offer the answer accepted (0 is the first written);
    ``problem`` says why an INVALID answer is wrong.  ``others`` names extensions the probe
    offered and the server accepted besides permessage-deflate (this client does not speak
    them, so their frames count as violations).
    """

    state: State
    offered: str | None = None
    answer: str | None = None
    agreed: Params | None = None
    offer: int | None = None
    problem: str = ""
    others: tuple[str, ...] = ()

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"state": str(self.state), "offered": self.offered,
                                 "answer": None if self.answer is None else self.answer[:300]}
        if self.agreed is not None:
            facts["agreed"] = self.agreed.evidence()
            facts["offer"] = self.offer
        if self.problem:
            facts["problem"] = self.problem[:300]
        if self.others:
            facts["others"] = list(self.others)
        return facts

    def __str__(self) -> str:
        if self.state is State.INVALID:
            return f"invalid answer {self.answer!r}: {self.problem}"
        if self.state is State.DECLINED:
            return "declined"
        return f"agreed {self.answer!r}"


def offer_text(extensions: str | Sequence[str] | None) -> str | None:
    """The header value for ``extensions``: a string as written, a sequence joined by
    ", " (several offers in preference order, RFC 7692 5), None or empty for no header."""
    if extensions is None or isinstance(extensions, str):
        return extensions or None
    return ", ".join(extensions) or None


def negotiate(offered: str | None, answer: str | None) -> Negotiation:
    """Judge the server's ``Sec-WebSocket-Extensions`` (``answer``, all its lines joined)
    against the value the probe sent (``offered``).

    An answer is valid when every extension in it was offered, permessage-deflate appears
    at most once, and that one element is a valid acceptance of at least one offer
    (RFC 7692 7.1): only known parameters, each once, with valid values; a
    ``server_no_context_takeover`` or ``server_max_window_bits`` the offer asked for is
    granted (the window no larger); ``client_max_window_bits`` only where offered (no larger
    than an offered value); either ``*_no_context_takeover`` may be added.
    """
    def invalid(problem: str) -> Negotiation:
        return Negotiation(State.INVALID, offered, answer, problem=problem)

    if answer is None or not answer.strip(" \t,"):
        return Negotiation(State.DECLINED, offered, answer)
    try:
        accepted = parse_extensions(answer)
    except HeaderError as exc:
        return invalid(f"the header breaks RFC 6455 9.1: {exc}")
    try:
        offers = parse_extensions(offered) if offered else []
    except HeaderError:
        offers = _lenient(offered or "")
    offered_names = {e.name.lower() for e in offers}
    mine = [e for e in accepted if e.name.lower() == NAME]
    others = tuple(e.name for e in accepted if e.name.lower() != NAME)
    stray = [name for name in others if name.lower() not in offered_names]
    if stray:
        return invalid(f"extension {stray[0]!r} was not offered (RFC 6455 9.1)")
    if len(mine) > 1:
        return invalid(f"{NAME} accepted {len(mine)} times (RFC 7692 5: at most one)")
    if not mine:
        return Negotiation(State.DECLINED, offered, answer, others=others)
    deflate_offers = [Offer.read(e) for e in offers if e.name.lower() == NAME]
    if not deflate_offers:
        return invalid(f"{NAME} was not offered (RFC 6455 9.1)")
    reasons: list[str] = []
    for index, offer in enumerate(deflate_offers):
        agreed, reason = accept(offer, mine[0])
        if agreed is not None:
            return Negotiation(State.AGREED, offered, answer, agreed, index, others=others)
        reasons.append(reason)
    if len(reasons) == 1:
        return invalid(reasons[0])
    return invalid("accepts none of the offers: " + "; ".join(
        f"offer {i + 1}: {r}" for i, r in enumerate(reasons)))


def _lenient(offered: str) -> list[Element]:
    """The elements of a malformed offer that can still be read, one by one."""
    found = []
    for part in offered.split(","):
        try:
            found += parse_extensions(part)
        except HeaderError as exc:
            name = part.split(";", 1)[0].strip()
            if name:  # kept as an offer no answer may accept
                found.append(Element(name, (("", f"{part.strip()[:60]!r}: {exc}"),)))
    return found


def accept(offer: Offer, element: Element) -> tuple[Params | None, str]:
    """The parameters agreed if ``element`` validly accepts ``offer``, else (None, why)."""
    if offer.problem:
        return None, f"the offer must be declined ({offer.problem}; RFC 7692 7.1)"
    seen: dict[str, str | None] = {}
    for key, value in element.params:
        name = key.lower()
        if name not in PARAMS:
            return None, f"unknown parameter {key!r} in the answer (RFC 7692 7.1)"
        if name in seen:
            return None, f"{key} twice in the answer (RFC 7692 7.1)"
        seen[name] = value
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        if name in seen and seen[name] is not None:
            return None, f"{name}={seen[name]!r}: it takes no value (RFC 7692 7.1.1)"
    if offer.server_no_context_takeover and "server_no_context_takeover" not in seen:
        return None, ("server_no_context_takeover was offered but not in the answer (RFC "
                      "7692 7.1.1.1: accepting such an offer includes it)")
    windows: dict[str, int] = {}
    for name in ("server_max_window_bits", "client_max_window_bits"):
        if name not in seen:
            continue
        value = seen[name]
        if value is None or not WINDOW_VALUE.fullmatch(value):
            return None, (f"{name}={value!r} in the answer, not a value from 8 to 15 "
                          "(RFC 7692 7.1.2)")
        windows[name] = int(value)
    if offer.server_max_window_bits is not None:
        got = windows.get("server_max_window_bits")
        if got is None:
            return None, (f"server_max_window_bits={offer.server_max_window_bits} was offered "
                          "but not in the answer (RFC 7692 7.1.2.1)")
        if got > offer.server_max_window_bits:
            return None, (f"server_max_window_bits={got}, larger than the offered "
                          f"{offer.server_max_window_bits} (RFC 7692 7.1.2.1)")
    client_window = windows.get("client_max_window_bits")
    if client_window is not None:
        if offer.client_max_window_bits is None:
            return None, ("client_max_window_bits in the answer, but the offer did not "
                          "include it (RFC 7692 7.1.2.2)")
        if offer.client_max_window_bits is not True and \
                client_window > offer.client_max_window_bits:
            return None, (f"client_max_window_bits={client_window}, larger than the offered "
                          f"{offer.client_max_window_bits} (RFC 7692 7.1.2.2)")
    elif isinstance(offer.client_max_window_bits, int) and \
            offer.client_max_window_bits is not True:
        client_window = offer.client_max_window_bits  # the client's own limit still holds
    return Params(
        server_no_context_takeover="server_no_context_takeover" in seen,
        client_no_context_takeover=("client_no_context_takeover" in seen
                                    or offer.client_no_context_takeover),
        server_max_window_bits=windows.get("server_max_window_bits", 15),
        client_max_window_bits=client_window or 15,
    ), ""


# -- the codec ----------------------------------------------------------------------------


class Deflater:
    """Compresses the client's messages as agreed (RFC 7692 7.2.1).

    zlib cannot deflate with a 256-byte window (``wbits`` 8); with
    ``client_max_window_bits=8`` the client writes stored blocks, which refer to nothing
    and so respect any window.
    """

    def __init__(self, params: Params, level: int = 6) -> None:
        self.params = params
        self.bits = params.client_max_window_bits
        self.level = level if self.bits > 8 else 0
        self._compressor = self._new()

    def _new(self) -> Any:
        return zlib.compressobj(self.level, zlib.DEFLATED, -max(self.bits, 9))

    def compress(self, data: bytes) -> bytes:
        """One message's payload: deflated, flushed, the 00 00 ff ff tail removed."""
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.params.client_no_context_takeover:
            self._compressor = self._new()
        if out.endswith(TAIL):
            out = out[:-4]
        return out or b"\x00"  # an empty message is one empty stored block (RFC 7692 7.2.3.6)


class InflateError(Exception):
    """A compressed message that may not be inflated; the text is the rule it broke."""


class Inflater:
    """Inflates the server's compressed messages strictly, one message at a time.

    The window is the agreed ``server_max_window_bits`` exactly: a server that refers
    further back than it agreed fails to inflate ("invalid distance too far back").  With
    ``server_no_context_takeover`` every message starts from an empty window, so a server
    that keeps its context anyway is caught the same way.  Output past ``max_size`` bytes
    stops the message (a decompression bomb, or a message larger than the client keeps);
    zlib never produces more than ``INFLATE_STEP`` past the bound, whatever the input.
    After an error the stream is lost and later compressed messages are not inflated.
    """

    def __init__(self, params: Params, max_size: int = DEFAULT_MAX_INFLATED) -> None:
        self.params = params
        self.max_size = max_size
        self.window = 1 << params.server_max_window_bits
        # zlib counts what one call has already written as history besides its window, so
        # a call writes at most a quarter window: a reference up to 1.25 windows back can
        # slip through, nothing further (a full 32 KiB window is the format's own limit).
        self.step = INFLATE_STEP if params.server_max_window_bits == 15 else self.window // 4
        self.broken = ""  # why inflating stopped for good
        self._history = b""  # the last window of output: a new stream after a final block
        self._decompressor = self._new()
        self._out: list[bytes] = []
        self._size = 0

    def _new(self) -> Any:
        bits = -self.params.server_max_window_bits
        if self._history:
            return zlib.decompressobj(bits, zdict=self._history)
        return zlib.decompressobj(bits)

    def feed(self, payload: bytes, fin: bool) -> bytes | None:
        """Inflate one frame's payload of the message in progress; the message at ``fin``.

        InflateError with the rule broken (also for every message after the first error).
        """
        if self.broken:
            raise InflateError(f"not inflated: the compressed stream was already lost at an "
                               f"earlier message ({self.broken})")
        try:
            self._inflate(payload)
            if fin:
                self._inflate(TAIL)
        except InflateError as exc:
            self.broken = str(exc)
            self._out, self._size = [], 0
            raise
        if not fin:
            return None
        message = b"".join(self._out)
        self._out, self._size = [], 0
        if self.params.server_no_context_takeover:
            self._history = b""
            self._decompressor = self._new()
        return message

    def _inflate(self, data: bytes) -> None:
        while True:
            try:
                out = self._decompressor.decompress(data, self.step)
            except zlib.error as exc:
                raise InflateError(f"the payload does not inflate with the agreed "
                                   f"{self.window}-byte window ({exc}; RFC 7692 7.2.2)"
                                   ) from None
            self._size += len(out)
            if self._size > self.max_size:
                raise InflateError(f"a compressed message inflating past {self.max_size} "
                                   "bytes, the client's bound (a decompression bomb, or a "
                                   "message larger than this connection accepts)")
            self._out.append(out)
            self._history = (self._history + out)[-self.window:]
            if self._decompressor.eof:
                # A block with BFINAL set ended the stream (allowed, RFC 7692 7.2.3.4): what
                # follows is a new stream that may still refer to the window before it.
                data = self._decompressor.unused_data
                self._decompressor = self._new()
                if not data:
                    return
                continue
            data = self._decompressor.unconsumed_tail
            if not data and len(out) < self.step:
                return  # all input used, and no output left waiting in zlib


__all__ = [
    "DEFAULT_MAX_INFLATED",
    "Deflater",
    "Element",
    "HeaderError",
    "InflateError",
    "Inflater",
    "Negotiation",
    "Offer",
    "Params",
    "State",
    "accept",
    "negotiate",
    "offer_text",
    "parse_extensions",
]
