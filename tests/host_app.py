"""A small host application embedding the web Hub, for the browser tests (run as a script).

It is what docs/embedding.md describes: a Starlette app that mounts the Hub at ``/app/hub``
and links accounts for its own customer ``cust-1`` through host sessions. Its pages:

- ``/app/connect``: creates a session for Qlik Cloud and redirects the browser to it;
- ``/app/framed``: the same session inside an iframe of a host page, which shows the message
  hub.js posts to it (``<output id="message">``), checking the message's origin;
- ``/app/back``: the session's ``return_url``. It checks ``state`` against the cookie
  ``/app/connect`` set, then shows the linked account's label, looked up for ``cust-1`` only.

Nobody may use the Hub's dashboard (``authorize`` says no): this host's customers link through
sessions only. It listens on a free port of 127.0.0.1 and prints ``The host app is at
http://127.0.0.1:PORT/`` first, as `hub serve` prints its address; the Hub reaches the
providers the way `hub serve` does (``HTTPS_PROXY``, ``SSL_CERT_FILE``, ``HUB_HOME`` from the
environment). Ctrl-C (SIGINT) stops it.
"""

from __future__ import annotations

import html
import secrets
from typing import Any

OWNER = "cust-1"
OWNER_NAME = "Customer One"
#: The cookie holding the state of the session this browser was sent to.
STATE_COOKIE = "host_state"


def _page(title: str, body: str, status: int = 200) -> Any:
    from starlette.responses import HTMLResponse

    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,">'  # else the browser asks for /favicon.ico (404)
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1>{body}</main></body></html>",
        status_code=status,
    )


#: The host page's own listener: only a message from its own origin (where the Hub is
#: mounted) is shown.
_LISTENER = """<output id="message" aria-live="polite"></output>
<script>
window.addEventListener("message", (event) => {
  if (event.origin !== window.location.origin) return;
  document.getElementById("message").textContent = JSON.stringify(event.data);
});
</script>"""


def main() -> None:
    """Serve the host app until Ctrl-C."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Mount, Route

    from hub_core.errors import AccountNotFound
    from hub_core.hub import Hub
    from hub_core.store import Store
    from hub_core.web import WebConfig, create_app, serving

    sock = serving.listen("127.0.0.1", 0)
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    store = Store()
    hub_app = create_app(
        Hub(),
        store,
        config=WebConfig(
            authorize=lambda request: False,
            base_url=f"{origin}/app/hub",
            allowed_return_origins=[origin],
            frame_ancestors=origin,
        ),
    )

    async def session(request: Request) -> tuple[str, str]:
        state = secrets.token_urlsafe(16)
        made = await hub_app.acreate_session(
            "qlik",
            owner=OWNER,
            owner_name=OWNER_NAME,
            return_url=f"{origin}/app/back",
            state=state,
        )
        return made.url, state

    def remember(response: Response, state: str) -> Response:
        response.set_cookie(STATE_COOKIE, state, path="/app", httponly=True, samesite="lax")
        return response

    async def connect(request: Request) -> Response:
        url, state = await session(request)
        return remember(RedirectResponse(url, status_code=303), state)

    async def framed(request: Request) -> Response:
        url, state = await session(request)
        frame = f'<iframe src="{html.escape(url)}" title="Link a Qlik Cloud account"'
        frame += ' width="1000" height="700"></iframe>'
        return remember(_page("Link your Qlik Cloud account", frame + _LISTENER), state)

    async def back(request: Request) -> Response:
        query = request.query_params
        if not query.get("state") or query.get("state") != request.cookies.get(STATE_COOKIE):
            return _page("That return was not for this browser", "", status=400)
        if query.get("hub_result") == "cancelled":
            return _page("Nothing was linked", "<p id='result'>cancelled</p>")
        try:
            account = store.get(query.get("hub_account", ""), owner=OWNER)
        except AccountNotFound:
            return _page("No such account of yours", "", status=404)
        shown = html.escape(f"{account.label} ({account.provider_id})")
        return _page("Account linked", f"<p id='result'>{shown}</p>")

    app = Starlette(
        routes=[
            Route("/app/connect", connect),
            Route("/app/framed", framed),
            Route("/app/back", back),
            Mount("/app/hub", app=hub_app),
        ]
    )
    print(f"The host app is at {origin}/", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=serving.log_config(), server_header=False)
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        hub_app.close()  # a Mount runs no lifespan of the app inside it
        store.close()


if __name__ == "__main__":
    main()
