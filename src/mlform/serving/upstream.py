"""The router's hop to the model servers: a small keep-alive HTTP/1.1 client.

:class:`UpstreamClient` keeps a connection pool per server (``(host, port)``) shared by all
requests, and answers one request per connection at a time. It costs a quarter to a half of
aiohttp's client CPU per request (the router has a 1 ms budget). A reused keep-alive
connection that closes before any byte of the answer is retried once on a fresh one; an
answer that is not valid HTTP/1.1 raises :class:`UpstreamProtocolError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["UpstreamClient", "UpstreamProtocolError", "UpstreamResponse"]


class UpstreamProtocolError(Exception):
    """The upstream's answer is not valid HTTP/1.1."""


class _StaleConnection(ConnectionError):
    """A reused keep-alive connection closed before any byte of the answer came."""


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


_NO_BODY_STATUS: Final = frozenset({204, 304})
_MAX_HEAD: Final = 64 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive connection; answers one request at a time."""

    __slots__ = (
        "_body_end",
        "_buf",
        "_chunks",
        "_framing",
        "_head",
        "_length",
        "_pos",
        "_waiter",
        "closed",
        "fresh",
        "head_only",
        "keep_alive",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.fresh = True
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._reset(False)

    def _reset(self, head_only: bool) -> None:
        self._buf = bytearray()
        self._head: tuple[int, str, list[tuple[str, str]]] | None = None
        self._framing = ""  # "length", "chunked", "close", "none"
        self._length = 0
        self._pos = 0
        self._chunks: list[bytes] = []
        self.head_only = head_only
        self.keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is out of step; drop it.
            self.close()
            return
        self._buf += data
        try:
            done = self._parse()
        except UpstreamProtocolError as exc:
            self._fail(exc)
            self.close()
            return
        if done is not None:
            waiter, self._waiter = self._waiter, None
            waiter.set_result(done)

    def eof_received(self) -> bool:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._head is not None and self._framing == "close":
                head = self._head
                waiter, self._waiter = self._waiter, None
                self.keep_alive = False
                waiter.set_result(UpstreamResponse(head[0], head[1], head[2], bytes(self._buf)))
            elif not self._buf:
                self._fail(
                    _StaleConnection("the server closed the connection")
                    if not self.fresh
                    else ConnectionResetError("the server closed the connection without answering")
                )
            else:
                self._fail(ConnectionResetError("the server closed the connection mid-answer"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            if exc is None:
                self.eof_received()
                if self._waiter is not None and not self._waiter.done():
                    self._fail(ConnectionResetError("connection lost"))
            elif not self._buf and not self.fresh:
                self._fail(_StaleConnection(str(exc)))
            else:
                self._fail(ConnectionResetError(str(exc) or type(exc).__name__))

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # requests

    def send(self, data: bytes, head_only: bool) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self._reset(head_only)
        waiter: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    # parsing

    def _parse(self) -> UpstreamResponse | None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise UpstreamProtocolError("response header block too large")
                return None
            status, reason, headers, framing, length, keep_alive = self._parse_head(
                bytes(buf[:end])
            )
            del buf[: end + 4]
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (100 Continue, 103 Early Hints): the real one follows
            self._head = (status, reason, headers)
            self._framing = framing
            self._length = length
            self.keep_alive = keep_alive
        status, reason, headers = self._head
        framing = self._framing
        if framing == "length":
            if len(buf) < self._length:
                return None
            if len(buf) > self._length:
                raise UpstreamProtocolError("more bytes than Content-Length")
            return UpstreamResponse(status, reason, headers, bytes(buf))
        if framing == "none":
            if buf:
                raise UpstreamProtocolError("a body where none may be")
            return UpstreamResponse(status, reason, headers, b"")
        if framing == "chunked":
            return self._parse_chunks(status, reason, headers)
        return None  # "close": the body ends with the connection (eof_received)

    def _parse_head(self, block: bytes) -> tuple[int, str, list[tuple[str, str]], str, int, bool]:
        lines = block.decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise UpstreamProtocolError(f"bad status line {lines[0][:80]!r}")
        http10 = parts[0] == "HTTP/1.0"
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers: list[tuple[str, str]] = []
        length = -1
        chunked = False
        connection = ""
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise UpstreamProtocolError(f"bad header line {line[:80]!r}")
            value = value.strip()
            lower = name.lower()
            if lower == "content-length":
                if not value.isdigit() or (length >= 0 and int(value) != length):
                    raise UpstreamProtocolError(f"bad Content-Length {value!r}")
                length = int(value)
            elif lower == "transfer-encoding":
                chunked = value.lower().rsplit(",", 1)[-1].strip() == "chunked"
                if not chunked:
                    raise UpstreamProtocolError(f"unsupported Transfer-Encoding {value!r}")
            elif lower == "connection":
                connection = value.lower()
            headers.append((name, value))
        keep_alive = "keep-alive" in connection if http10 else "close" not in connection
        if self.head_only or status in _NO_BODY_STATUS or status == 101:
            framing = "none"
            length = 0
            keep_alive = keep_alive and status != 101
        elif chunked:
            framing = "chunked"
        elif length >= 0:
            framing = "length"
        else:
            framing = "close"
            keep_alive = False
        return status, reason, headers, framing, max(length, 0), keep_alive

    def _parse_chunks(
        self, status: int, reason: str, headers: list[tuple[str, str]]
    ) -> UpstreamResponse | None:
        buf = self._buf
        pos = self._pos
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                self._pos = pos
                return None
            size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise UpstreamProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                # Trailers (ignored) end with an empty line.
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    self._pos = pos
                    return None
                body = b"".join(self._chunks)
                self._chunks = []
                return UpstreamResponse(status, reason, headers, body)
            start = line_end + 2
            end = start + size
            if len(buf) < end + 2:
                self._pos = pos
                return None
            if buf[end : end + 2] != b"\r\n":
                raise UpstreamProtocolError("chunk not followed by CRLF")
            self._chunks.append(bytes(buf[start:end]))
            pos = end + 2
            if pos > 1 << 20:
                del buf[:pos]
                pos = 0


class UpstreamClient:
    """Keep-alive connection pools to the upstreams, shared by all requests."""

    def __init__(self, *, limit: int, timeout: float, max_idle: int = 256) -> None:
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(limit)
        self._all: set[_Connection] = set()

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        """One request/answer; raises TimeoutError, OSError or UpstreamProtocolError."""
        loop = asyncio.get_running_loop()
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("utf-8", "surrogateescape")
        if body:
            data += body
        head_only = method == "HEAD"
        key = (host, port)
        deadline = loop.time() + (timeout if timeout is not None else self.timeout)
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            reuse = True
            while True:
                conn = await self._acquire(loop, key, deadline, reuse)
                waiter = conn.send(data, head_only)
                handle = loop.call_at(deadline, _expire, waiter)
                try:
                    response = await waiter
                except _StaleConnection:
                    # A keep-alive connection the server closed as the request went out:
                    # the request was not processed; send it once more on a new connection.
                    self._discard(conn)
                    reuse = False
                    continue
                except BaseException:
                    self._discard(conn)
                    raise
                finally:
                    handle.cancel()
                self._release(key, conn)
                return response
        finally:
            self._slots.release()

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, int], deadline: float, reuse: bool
    ) -> _Connection:
        idle = self._idle.get(key)
        while idle and reuse:
            conn = idle.pop()
            if not conn.closed:
                conn.fresh = False
                return conn
            self._all.discard(conn)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        async with asyncio.timeout(remaining):
            _, conn = await loop.create_connection(_Connection, key[0], key[1])
        self._all.add(conn)
        return conn

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        if conn.closed or not conn.keep_alive:
            self._discard(conn)
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle:
            self._discard(conn)
            return
        idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._all.discard(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._idle.clear()


def _expire(waiter: asyncio.Future[UpstreamResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the upstream did not answer in time"))


# -- the router ----------------------------------------------------------------------------
