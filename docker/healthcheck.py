"""Container health check: GET /healthz on the local service; exit 0 when it answers 200.

Used by the image's HEALTHCHECK and docker-compose.yml. Standard library only, so it
needs no curl in the image. Reads SCGAN_HOST / SCGAN_PORT like the service does;
``healthcheck.py /readyz`` checks readiness instead.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

#: Bind-all addresses mean "every interface": probe the loopback one.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    host = os.environ.get("SCGAN_HOST", "127.0.0.1")
    host = _LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{os.environ.get('SCGAN_PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
