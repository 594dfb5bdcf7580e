"""The gateway's HTTP/1.1 server for its public listener (the admin listener stays on aiohttp).

Server       the listener: protocol factory, guard, shutdown (server.py)
Connection   one client connection: framing by llhttp, requests in order (connection.py)
Request, Response, StreamResponse   what the pipeline reads and answers (messages.py)
"""

from gateway.http_server.connection import Connection
from gateway.http_server.messages import Answer, Request, Response, StreamResponse
from gateway.http_server.server import Server

__all__ = ["Answer", "Connection", "Request", "Response", "Server", "StreamResponse"]
