"""The control channel between the main process and a worker process.

A TCP connection on 127.0.0.1 carrying messages framed as a 4-byte big-endian length and a UTF-8
JSON object. Every message has `"v": CHANNEL_VERSION` and a type `"t"`:

worker -> main:
- `hello`: `{worker, token, pid, roster, counts}`, once its stations are built and started;
  `roster` is `[[hashId, stationId, index, templateName], ...]` in fleet order;
- `reply`: `{id, payload}` or `{id, error}`: the answer to a `call`;
- `counts`: `{counts, changed}`: the worker's `FleetCounts` (a dict), pushed at least once a second,
  and soon after a station changes (`changed`: the UI should refresh);
- `bye`: `{counts, statistics, metrics}` after a `shutdown`: the final figures.

main -> worker:
- `call`: `{id, procedure, payload}`: a UI procedure or a worker query (`worker_procedures`);
- `shutdown`: `{grace}`: stop the stations (close frames), answer `bye`, and return.

A message of another version, or one that is not a JSON object, ends the channel: both sides
come from the same install, so this only happens when something is badly wrong.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import trio

__all__ = ["CHANNEL_VERSION", "Channel", "ChannelClosed"]

CHANNEL_VERSION = 1
_HEADER = struct.Struct(">I")
# A worker's statistics of thousands of stations are a few MiB; this bounds a corrupt length.
MAX_MESSAGE = 256 * 1024 * 1024
_READ = 65536

Message = dict[str, Any]


class ChannelClosed(Exception):
    """The other side went away (or sent something that is not a message of ours)."""


class Channel:
    """Framed JSON messages over a trio stream; `send` may be called by several tasks."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, message: Message) -> None:
        """Send one message (`v` is added)."""
        data = json.dumps({"v": CHANNEL_VERSION, **message}, separators=(",", ":")).encode()
        async with self._send_lock:
            try:
                await self.stream.send_all(_HEADER.pack(len(data)) + data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ChannelClosed(str(exc) or "channel closed") from None

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                chunk = await self.stream.receive_some(max(_READ, size - len(self._buffer)))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ChannelClosed(str(exc) or "channel closed") from None
            if not chunk:
                raise ChannelClosed("the other side closed the channel")
            self._buffer += chunk

    async def receive(self) -> Message:
        """The next message; raises ChannelClosed at the end or on a malformed message."""
        await self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_MESSAGE:
            raise ChannelClosed(f"message of {size} bytes announced: not a channel of ours")
        await self._fill(_HEADER.size + size)
        data = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        try:
            message = json.loads(data)
        except ValueError as exc:
            raise ChannelClosed(f"not JSON: {exc}") from None
        if not isinstance(message, dict) or message.get("v") != CHANNEL_VERSION:
            raise ChannelClosed(f"not a version {CHANNEL_VERSION} message")
        return message

    async def aclose(self) -> None:
        """Close the stream."""
        await self.stream.aclose()
