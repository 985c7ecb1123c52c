"""PyTorch's CPU wheel index, answered from PyPI, for building images/trainer/Dockerfile unchanged on a
machine that reaches PyPI but not download.pytorch.org (ci/images/README.md says what this changes).

`GET /whl/cpu/<project>/` returns PyPI's simple page for the project, whose file links are absolute
(PyPI's file host), so pip downloads the files from PyPI itself. build.sh starts this on 127.0.0.1:443
with a certificate for download.pytorch.org signed by a CA made for the one build, and maps the name
to 127.0.0.1 inside the build only.

Usage: python3 pytorch_cpu_index.py CERT KEY [PORT]
"""

from __future__ import annotations

import re
import ssl
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/whl/cpu/"
PYPI_SIMPLE = "https://pypi.org/simple/"
PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class IndexPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        project = self.path.split("?")[0].removeprefix(PREFIX).strip("/")
        if not self.path.startswith(PREFIX) or not PROJECT.fullmatch(project):
            self.send_error(404, "only /whl/cpu/<project>/ is served")
            return
        upstream = urllib.request.Request(PYPI_SIMPLE + project + "/", headers={"Accept": "text/html"})
        try:
            with urllib.request.urlopen(upstream, timeout=120) as answer:
                body = answer.read()
        except urllib.error.HTTPError as error:
            self.send_error(error.code, f"PyPI answered {error.code} for {project}")
            return
        except OSError as error:
            self.send_error(502, f"PyPI unreachable: {error}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        sys.stderr.write("pytorch-cpu-index: " + format % args + "\n")


def main() -> None:
    cert, key = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 443
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), IndexPage)
    except OSError as error:
        sys.exit(f"pytorch-cpu-index: cannot listen on 127.0.0.1:{port}: {error.strerror}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"pytorch-cpu-index: serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
