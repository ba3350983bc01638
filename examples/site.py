"""A small offline web site on 127.0.0.1:8765 that examples/urls.txt points at.

    python examples/site.py            # serve until Ctrl-C
It serves /img/<n>.jpg (JPEG images made with Pillow), /page/<n>.html, /flaky (503 once,
then 200) and answers 404 for anything else.
"""

from __future__ import annotations

import argparse
import io
from functools import lru_cache

from aiohttp import web

HOST = "127.0.0.1"
PORT = 8765


@lru_cache(maxsize=64)
def jpeg(n: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (64 + n, 48 + n), ((n * 37) % 256, (n * 91) % 256, (n * 53) % 256))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_app() -> web.Application:
    seen: set[str] = set()

    async def img(request: web.Request) -> web.Response:
        return web.Response(body=jpeg(int(request.match_info["n"])), content_type="image/jpeg")

    async def page(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        return web.Response(
            text=f"<html><body><h1>page {n}</h1></body></html>", content_type="text/html"
        )

    async def flaky(request: web.Request) -> web.Response:
        if request.path_qs not in seen:
            seen.add(request.path_qs)
            raise web.HTTPServiceUnavailable()
        return web.Response(text="recovered\n")

    app = web.Application()
    app.router.add_get(r"/img/{n:\d+}.jpg", img)
    app.router.add_get(r"/page/{n:\d+}.html", page)
    app.router.add_get("/flaky", flaky)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    web.run_app(make_app(), host=HOST, port=args.port, print=None)


if __name__ == "__main__":
    main()
