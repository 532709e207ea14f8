"""Reading LSP messages from a stream that may carry bytes outside any message.

pygls reads a header line at a time and only recognises a line that is exactly `Content-Length: N\r\n`. Bytes sent
without a header (garbage, a stray print from a client plugin) glue themselves to the next header line, and the
body after it, which ends with no newline, glues itself to the header after that: the stream never recovers and the
server, alive, never answers again. Both readers here cut whatever stands before `Content-Length:` in a line, so the
first well-framed message after the garbage is read again:

- `PipeReader` (what `nextword serve` uses on stdio): the event loop reads the pipe itself, so a message costs no
  hand-over between threads (pygls' own stdio reader runs each header line and each body as a job on a thread
  pool: three round trips through another thread, and the interpreter lock, per message; about 1 ms of every
  completion's round trip on 2 cores);
- `ResyncingStdin`: a blocking stream for pygls' thread-pool reader, where stdin cannot be watched by the event
  loop (a regular file, or Windows).
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import BinaryIO

log = logging.getLogger(__name__)

HEADER = b"Content-Length:"
LINE_LIMIT = 1 << 20
"""`PipeReader` drops a line longer than this (bytes) whole: no header line is; only garbage can be."""


def cut_before_header(line: bytes) -> tuple[bytes, int]:
    """`line` from its `Content-Length:` on when something stands before it, and how many bytes were cut."""
    at = line.find(HEADER)
    if at > 0:
        log.warning("dropped %d bytes that were not part of an LSP message", at)
        return line[at:], at
    return line, 0


class ResyncingStdin:
    """A binary input stream (what `pygls`' `StdinAsyncReader` reads: `readline` and `read`) that drops the bytes
    before a `Content-Length:` header in a line."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.dropped = 0  # bytes dropped so far

    def readline(self) -> bytes:
        line, cut = cut_before_header(self.raw.readline())
        self.dropped += cut
        return line

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)


class PrefixedStream:
    """A binary input stream (`readline`, `read`) that reads `prefix` first, then `raw`."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self.prefix = io.BytesIO(prefix)
        self.raw = raw

    def readline(self) -> bytes:
        line = self.prefix.readline()
        return line if line.endswith(b"\n") else line + self.raw.readline()

    def read(self, n: int = -1) -> bytes:
        data = self.prefix.read(n)
        if n < 0:
            return data + self.raw.read()
        return data if len(data) == n else data + self.raw.read(n - len(data))


class PipeReader:
    """pygls' asynchronous reader (`readline`, `readexactly`) over an `asyncio.StreamReader`, with the same resync
    as `ResyncingStdin`; end of input reads as `b""`."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.dropped = 0  # bytes dropped so far (lines over LINE_LIMIT are counted as LINE_LIMIT)

    @classmethod
    async def of_pipe(cls, pipe: BinaryIO, pending: bytes = b"") -> PipeReader | None:
        """A reader the running event loop feeds from `pipe` (a pipe, socket or terminal), after the bytes `pending`
        (read from it already); None when the loop cannot watch it (a regular file; Windows' event loop and pipes)."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=LINE_LIMIT, loop=loop)
        if pending:
            stream.feed_data(pending)
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream, loop=loop), pipe)
        except (ValueError, OSError, NotImplementedError):
            return None
        return cls(stream)

    async def readline(self) -> bytes:
        while True:
            try:
                raw = await self.stream.readline()
            except ValueError:  # longer than LINE_LIMIT: asyncio has dropped it
                log.warning("dropped a line of more than %d bytes that was not part of an LSP message", LINE_LIMIT)
                self.dropped += LINE_LIMIT
                continue
            line, cut = cut_before_header(raw)
            self.dropped += cut
            return line

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:  # the input ended inside a body
            return exc.partial
