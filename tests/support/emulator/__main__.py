"""Run the emulator as a process: python -m tests.support.emulator --port 8765 [--world world.json]."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .builder import typical_world
from .keys import ensure_registry_signing_material
from .server import Emulator
from .world import World


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--world", help="world JSON (World.to_json); default: typical_world()")
    parser.add_argument("--registry-key-dir", help="where the realm's signing key and CA cert live")
    parser.add_argument("--registry-issuer", default="emulated-artifact-registry")
    parser.add_argument("--registry-service", default="127.0.0.1:5000")
    args = parser.parse_args(argv)

    if args.world:
        world = World.from_json(Path(args.world).read_text())
    else:
        world = typical_world(registry_host=args.registry_service)
    key_path = cert_path = None
    if args.registry_key_dir:
        key_path, cert_path = ensure_registry_signing_material(args.registry_key_dir)
    emu = Emulator(world, host=args.host, port=args.port, registry_signing_key_path=key_path,
                   registry_issuer=args.registry_issuer, registry_service=args.registry_service)
    emu.start()
    # One JSON line on stdout tells a parent process where to connect.
    print(json.dumps({"url": emu.url, "registry_cert": cert_path, "labels": world.labels}), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
