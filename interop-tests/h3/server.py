"""A small HTTP/3 server on aioquic, an implementation independent of the gateway's h3
crate, for the interop test gateway/tests/integration/h3_interop.rs.

  POST /echo       200 with the request body, once it has all arrived, and x-seen-* headers
                   saying what the server received (method, authority, path, Host,
                   x-aimux-identity, body length)
  GET /stream?n=N  200, then "chunk 0" at once and each further chunk (up to N) only when
                   a request to /release has arrived (on any stream): proof of streaming
  POST /release    204; lets /stream send its next chunk

Prints "listening on HOST:PORT" once the UDP socket is bound. --alpn changes the offered
ALPN protocols (to check how a server that does not speak h3 is reported).
"""

import argparse
import asyncio
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated

RELEASE_WAIT = 20.0  # seconds; nothing waits unboundedly
CHUNK = 16 * 1024


class Server(QuicConnectionProtocol):
    release: asyncio.Event  # shared by all connections, set in main()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = None
        self._requests = {}  # stream id -> (headers, body)
        self._tasks = set()

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is None:
            return
        for h3_event in self._h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self._requests[h3_event.stream_id] = (dict(h3_event.headers), bytearray())
            elif isinstance(h3_event, DataReceived) and h3_event.stream_id in self._requests:
                self._requests[h3_event.stream_id][1].extend(h3_event.data)
            else:
                continue
            if h3_event.stream_ended:
                headers, body = self._requests.pop(h3_event.stream_id)
                self.respond(h3_event.stream_id, headers, bytes(body))

    def respond(self, stream_id, headers, body):
        url = urlsplit(headers.get(b":path", b"/").decode())
        if url.path.endswith("/release"):
            Server.release.set()
            self._h3.send_headers(stream_id, [(b":status", b"204")], end_stream=True)
        elif url.path.endswith("/stream"):
            n = int(parse_qs(url.query).get("n", ["3"])[0])
            self._h3.send_headers(
                stream_id, [(b":status", b"200"), (b"content-type", b"text/plain")]
            )
            task = asyncio.ensure_future(self.stream(stream_id, n))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            seen = [
                (b":status", b"200"),
                (b"x-server", b"aioquic"),
                (b"x-seen-method", headers.get(b":method", b"")),
                (b"x-seen-authority", headers.get(b":authority", b"")),
                (b"x-seen-path", headers.get(b":path", b"")),
                (b"x-seen-host-header", b"yes" if b"host" in headers else b"no"),
                (b"x-seen-identity", headers.get(b"x-aimux-identity", b"")),
                (b"x-body-len", str(len(body)).encode()),
            ]
            self._h3.send_headers(stream_id, seen)
            for i in range(0, len(body), CHUNK):
                self._h3.send_data(stream_id, body[i : i + CHUNK], end_stream=False)
            self._h3.send_data(stream_id, b"", end_stream=True)

    async def stream(self, stream_id, n):
        for i in range(n):
            if i > 0:
                await asyncio.wait_for(Server.release.wait(), RELEASE_WAIT)
                Server.release.clear()
            self._h3.send_data(stream_id, f"chunk {i}\n".encode(), end_stream=False)
            self.transmit()
        self._h3.send_data(stream_id, b"", end_stream=True)
        self.transmit()


async def main(args):
    config = QuicConfiguration(is_client=False, alpn_protocols=args.alpn.split(","))
    config.load_cert_chain(args.cert, args.key)
    Server.release = asyncio.Event()
    server = await serve(
        args.host, args.port, configuration=config, create_protocol=Server
    )
    # With --port 0 the kernel picks the port; the caller reads it from this line.
    host, port = server._transport.get_extra_info("sockname")[:2]
    print(f"listening on {host}:{port}", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--alpn", default=",".join(H3_ALPN))
    asyncio.run(main(parser.parse_args()))
