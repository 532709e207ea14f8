"""Reading LSP messages from a stream that may carry bytes outside any message.

pygls reads a header line at a time and only recognises a line that is exactly `Content-Length: N\r\n`. Bytes sent
without a header (garbage, a stray print from a client plugin) glue themselves to the next header line, and the
body after it, which ends with no newline, glues itself to the header after that: the stream never recovers and the
server, alive, never answers again. `ResyncingStdin` cuts whatever stands before `Content-Length:` in a line, so the
first well-framed message after the garbage is read again.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

log = logging.getLogger(__name__)

HEADER = b"Content-Length:"


class ResyncingStdin:
    """A binary input stream (what `pygls`' `StdinAsyncReader` reads: `readline` and `read`) that drops the bytes
    before a `Content-Length:` header in a line."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.dropped = 0  # bytes dropped so far

    def readline(self) -> bytes:
        line = self.raw.readline()
        at = line.find(HEADER)
        if at > 0:
            self.dropped += at
            log.warning("dropped %d bytes that were not part of an LSP message", at)
            return line[at:]
        return line

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)
