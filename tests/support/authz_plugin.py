"""Bitbucket's `pipelines` Docker authorization plugin, re-created for the Bitbucket-like docker service.

A legacy Docker plugin (stdlib only) on a unix socket under /run/docker/plugins/: dockerd asks it about every
API request (/AuthZPlugin.AuthZReq) and refuses, with "authorization denied by plugin <name>: <Msg>", what it
denies. Plugin sockets are found by name machine-wide, so it runs under a name of its own (stack.AUTHZ_PLUGIN),
not Bitbucket's `pipelines`, and removes its socket when it stops. The rules and texts are Bitbucket's, as users
quote them (shared/reference/bitbucket-pipes.md §6):

    -v only supports $BITBUCKET_CLONE_DIR and its subdirectories.
    --privileged=true is not allowed
    --mounts is not allowed
    --security-opt is not allowed

    python tests/support/authz_plugin.py --socket /run/docker/plugins/keyless-suite-pipelines.sock --allow /srv/pipe-stack/bitbucket/clones
"""

import argparse
import base64
import json
import os
import re
import signal
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

BIND_OUTSIDE_CLONE = "-v only supports $BITBUCKET_CLONE_DIR and its subdirectories."
PRIVILEGED = "--privileged=true is not allowed"
MOUNTS = "--mounts is not allowed"
SECURITY_OPT = "--security-opt is not allowed"
# CHOSEN: Bitbucket's text for a create request whose body the daemon did not pass on is not known.
UNREADABLE = "container options could not be read"

_CREATE = re.compile(r"^(/v[0-9.]+)?/containers/create(\?|$)")


def decide(request: dict, clone_root: str) -> str | None:
    """None to allow the request, else the message dockerd shows after 'authorization denied by plugin <name>: '."""
    if request.get("RequestMethod") != "POST" or not _CREATE.match(request.get("RequestUri", "")):
        return None
    try:
        body = json.loads(base64.b64decode(request["RequestBody"]))
        host = body.get("HostConfig") or {}
    except (KeyError, ValueError, TypeError, AttributeError):
        return UNREADABLE  # dockerd passes JSON bodies under 1 MB only; fail closed on anything else
    if host.get("Privileged"):
        return PRIVILEGED
    if host.get("Mounts"):
        return MOUNTS
    if host.get("SecurityOpt"):
        return SECURITY_OPT
    if not all(_inside(bind.split(":", 1)[0], clone_root) for bind in host.get("Binds") or []):
        return BIND_OUTSIDE_CLONE
    return None


def _inside(source: str, root: str) -> bool:
    """A host path at or below the clone root once symlinks and `..` are resolved; named volumes are not."""
    if not source.startswith("/"):
        return False
    real, real_root = os.path.realpath(source), os.path.realpath(root)
    return real == real_root or real.startswith(real_root + "/")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # dockerd's plugin client keeps connections alive

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        if self.path == "/Plugin.Activate":
            self._reply({"Implements": ["authz"]})
        elif self.path == "/AuthZPlugin.AuthZReq":
            refusal = decide(request, self.server.clone_root)
            if refusal:  # method and path only: bodies carry the step's environment, tokens included
                print(f"denied {request.get('RequestMethod')} {request.get('RequestUri', '').split('?')[0]}: {refusal}",
                      file=sys.stderr, flush=True)
            self._reply({"Allow": True} if refusal is None else {"Allow": False, "Msg": refusal})
        elif self.path == "/AuthZPlugin.AuthZRes":
            self._reply({"Allow": True})
        else:
            self._reply({"Err": f"unknown plugin call {self.path}"}, status=404)

    def _reply(self, body: dict, status: int = 200) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def address_string(self) -> str:  # a unix socket peer has no address
        return "dockerd"

    def log_message(self, format, *args):
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _stop(signum, frame):
    raise SystemExit(0)  # unwinds through main's `finally`, which removes the socket


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--allow", required=True, help="the clone directory root that -v may bind")
    args = parser.parse_args(argv)
    if os.path.exists(args.socket):
        os.unlink(args.socket)  # a stale socket from a plugin that died
    os.makedirs(os.path.dirname(args.socket), exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with _Server(args.socket, _Handler) as server:
            server.clone_root = args.allow
            print(f"authorization plugin on {args.socket}, -v allowed under {args.allow}", file=sys.stderr, flush=True)
            server.serve_forever()
    finally:  # plugin sockets are machine-wide: a dead one must not be left for another daemon to find
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
