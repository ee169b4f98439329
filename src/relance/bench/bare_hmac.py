"""The limit of ``webhook_single_requests_per_s``: a bare FastAPI route that only checks the
Cloud API's HMAC, served by uvicorn with ``relance api``'s options.

``python -m relance.bench.bare_hmac PORT``: what one webhook request costs this machine's
Python and HTTP stack before relance does anything with it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from relance.api import SERVER_OPTIONS


def create_app(secret: str) -> FastAPI:
    app = FastAPI()
    key = secret.encode()

    @app.post("/webhooks/meta")
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        given = request.headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"detail": "bad signature"}, status_code=403)
        return JSONResponse({"accepted": True})

    return app


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    app = create_app(os.environ.get("META_APP_SECRET", ""))
    uvicorn.run(app, host="127.0.0.1", port=port, **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
