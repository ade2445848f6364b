"""Server-sent events from an upstream, split into their `data:` fields as reads deliver them.

A read can end anywhere: in the middle of a line, of an event, or after many events. Whatever
a read completes is returned at once, so events that arrived together are relayed together.
"""

from __future__ import annotations

from chatservice.errors import UpstreamInvalidResponseError

# A line longer than this without its end is not an event a chat stream sends (the largest
# are tool-call argument chunks); without a bound, a broken upstream could fill the memory.
MAX_LINE_BYTES = 4 * 1024 * 1024


class DataFields:
    """Feed it the bytes of each read; it returns the `data:` fields completed by them."""

    __slots__ = ("_partial", "_route")

    def __init__(self, route: str) -> None:
        self._route = route
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # the line this read did not finish (often b"")
        if len(self._partial) > MAX_LINE_BYTES:
            raise UpstreamInvalidResponseError(
                f"The upstream for `{self._route}` sent a stream line longer than "
                f"{MAX_LINE_BYTES} bytes."
            )
        return [field for field in map(_data_field, lines) if field is not None]

    def end(self) -> list[bytes]:
        """The last line, when the stream ended without a line break after it."""
        line, self._partial = self._partial, b""
        field = _data_field(line)
        return [] if field is None else [field]


def _data_field(line: bytes) -> bytes | None:
    if not line.startswith(b"data:"):
        line = line.strip()  # as before: a field indented by a sloppy upstream still counts
        if not line.startswith(b"data:"):
            return None  # blank separators, comments (": ping") and other SSE fields
    return line[5:].strip()
