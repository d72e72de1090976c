"""How the async driver's requests leave: straight to an httpx transport, no client around it.

The driver already does what `httpx.AsyncClient` would add (redirects, timeouts, body reading)
and needs none of the rest (auth, cookies, event hooks), which costs a quarter of the CPU of
each check when thousands run at once. `AsyncSender` hands each request to the transport
itself, through the environment's HTTPS proxy when one is set (``HTTPS_PROXY``/``ALL_PROXY``,
minus ``NO_PROXY``, read by the standard library as any client does).
"""

from __future__ import annotations

import ssl
import urllib.request

import httpx

__all__ = ["AsyncSender"]


class AsyncSender:
    """Send requests over one pooled async transport (aiohttp-backed unless one is given)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 20,
    ) -> None:
        self._proxied: httpx.AsyncBaseTransport | None = None
        if transport is not None:
            self._direct = transport
            return
        # httpx's own async pool slows down sharply under concurrency (encode/httpx#3215).
        from httpx_aiohttp import AiohttpTransport

        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=None)
        self._direct = AiohttpTransport(verify=verify, limits=limits)
        proxies = urllib.request.getproxies()
        proxy = proxies.get("https") or proxies.get("all")
        if proxy:
            self._proxied = AiohttpTransport(verify=verify, limits=limits, proxy=httpx.Proxy(proxy))

    def _transport_for(self, request: httpx.Request) -> httpx.AsyncBaseTransport:
        if self._proxied is None:
            return self._direct
        return self._direct if urllib.request.proxy_bypass(request.url.host) else self._proxied

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send *request* (its ``timeout`` extension applies); the body is left to stream."""
        return await self._transport_for(request).handle_async_request(request)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._direct.aclose()
        if self._proxied is not None:
            await self._proxied.aclose()
