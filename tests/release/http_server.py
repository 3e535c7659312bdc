"""A loopback HTTP server for the release tests: ``python http_server.py ROOT`` serves ROOT on 127.0.0.1 at a free
port, which it prints first. Two paths misbehave on purpose, announcing the whole file but sending half of it:
``/truncate/<file>`` then closes the connection, ``/die/<file>`` then ends the server process."""

from __future__ import annotations

import functools
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        for mode in ("truncate", "die"):
            prefix = f"/{mode}/"
            if self.path.startswith(prefix):
                with open(os.path.join(self.directory, self.path[len(prefix):]), "rb") as f:
                    data = f.read()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if mode == "die":
                    os._exit(0)  # the server is gone mid-body
                self.close_connection = True
                return
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
    print(server.server_address[1], flush=True)
    server.serve_forever()
