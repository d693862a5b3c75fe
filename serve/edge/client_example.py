"""Post images to a running `simmim-deploy serve` with the standard library only.

Usage: python client_example.py http://127.0.0.1:8000 photo1.jpg [photo2.jpg ...] [--token T]
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from pathlib import Path


def predict(url: str, paths: list[str], token: str | None = None) -> dict:
    """One multipart request with every image in the field ``images``."""
    boundary = uuid.uuid4().hex
    body = b""
    for path in paths:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
                f'filename="{Path(path).name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + Path(path).read_bytes()
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/v1/predict", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


if __name__ == "__main__":
    args = sys.argv[1:]
    token = args[args.index("--token") + 1] if "--token" in args else None
    files = [a for a in args[1:] if a != "--token" and a != token]
    print(json.dumps(predict(args[0], files, token), indent=2))
