"""A bare TCP forwarder: the cheapest hop anything can add between a client and storage.

    python -m benchmarks.tcp_forwarder --port 9100 --to 127.0.0.1:8333

It parses nothing and checks nothing: each accepted connection is joined to a new connection to
`--to`, and bytes are moved both ways by splice(2) through a pipe in a thread per direction,
so they never enter user space. `gateway_load` puts it where the gateway goes to measure what
one more loopback TCP hop costs on this machine by itself: the ceiling for any proxy's (b)
ratio, the gateway's included. Loopback only; not a product component.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Sequence

PIPE_BYTES = 1024 * 1024


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Move bytes until the source ends, then end the sink's sending side."""
    pipe_out, pipe_in = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        while True:
            count = os.splice(source.fileno(), pipe_in, PIPE_BYTES)
            if count == 0:
                break
            while count:
                count -= os.splice(pipe_out, sink.fileno(), count)
    except OSError:
        pass
    finally:
        os.close(pipe_out)
        os.close(pipe_in)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def join(client: socket.socket, target: tuple[str, int]) -> None:
    with client, socket.create_connection(target) as upstream:
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()


def serve(port: int, target: tuple[str, int]) -> None:
    with socket.create_server(("127.0.0.1", port), backlog=128) as listener:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=join, args=(client, target), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tcp_forwarder",
        description="Forward 127.0.0.1:PORT to HOST:PORT with splice(2) (benchmark reference).",
    )
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", help="where to forward")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        parser.error("--to must be HOST:PORT")
    try:
        serve(args.port, (host, int(port)))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
