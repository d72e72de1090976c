"""``hub serve``: the web Hub (`hub_core.web`) under uvicorn.

The dashboard asks for the sign-in token `hub serve` prints (as Jupyter does), unless
``--no-auth``, which is refused off loopback. Off loopback the key form is served only over
TLS: uvicorn's certificate options, or a TLS proxy in front named with ``--proxy-headers``.
uvicorn's access log never shows a sign-in token (`hub_core.web.serving.TokenFilter`).
With ``HUB_WEBHOOK_URL`` set, the pages' events go to the webhook outbox and a background
sender delivers them (`hub_core.webhooks`).

Everything but click loads when the command runs: ``hub --help`` pays for none of it.
"""

from __future__ import annotations

from typing import Any

import click

from hub_core.cli import reports_errors, say, shown, state
from hub_core.errors import ConfigurationError

__all__ = ["serve"]


_FILE = click.Path(exists=True, dir_okay=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-auth", is_flag=True, help="No sign-in token (loopback addresses only).")
@click.option(
    "--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate."
)
@click.option(
    "--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), help="Its private key."
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="Behind a TLS proxy: trust its X-Forwarded-Proto/For (see --forwarded-allow-ips).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Proxy addresses whose forwarded headers are trusted.",
)
@reports_errors
def serve(
    host: str,
    port: int,
    no_auth: bool,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    proxy_headers: bool,
    forwarded_allow_ips: str,
) -> None:
    """Serve the web Hub: providers, Connect with the guide, Accounts."""
    try:
        import uvicorn

        from hub_core.web import WebConfig, create_app, serving
    except ImportError as exc:
        raise ConfigurationError(
            "hub-core[web]",
            f"the web Hub needs the web extra ({exc.name} is missing): pip install 'hub-core[web]'",
        ) from None
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigurationError("--ssl-certfile", "give both --ssl-certfile and --ssl-keyfile")
    tls = ssl_certfile is not None
    loopback = serving.is_loopback(host)
    if no_auth and not loopback:
        raise ConfigurationError(
            "--no-auth",
            f"--no-auth is for loopback addresses only: on {host} anyone who can reach the "
            "port could link and unlink accounts. Drop --no-auth and use the printed token",
        )
    if not loopback and not tls and not proxy_headers:
        raise ConfigurationError(
            "--host",
            f"on {host} the key form would travel over plain http. Give --ssl-certfile and "
            "--ssl-keyfile, or serve behind a TLS proxy and pass --proxy-headers (with "
            "--forwarded-allow-ips set to the proxy's address)",
        )
    if ssl_certfile is not None and ssl_keyfile is not None:
        _check_tls(ssl_certfile, ssl_keyfile)  # before anything listens or an address is shown
    current = state()
    # Checked before the server starts: a refused HUB_WEBHOOK_URL is exit 2, not a log line.
    outbox = current.outbox
    config = WebConfig(no_auth=no_auth, on_event=outbox.on_event if outbox else None)
    app = create_app(current.hub, current.store, config=config)
    sock = serving.listen(host, port)
    address = serving.address(sock, host, tls=tls)
    sign_in = address if no_auth else f"{address}?token={config.auth_token}"
    say(shown("The web Hub is at {url}", url=sign_in))
    if proxy_headers and not tls:
        say(shown("Behind your TLS proxy, open its address with the same path and token."))
    if outbox is not None:
        outbox.start()
        say(shown("Webhooks go to {url}, signed.", url=outbox.config.shown_url))
    say(shown("Open it in your browser; Ctrl-C stops the server."))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=serving.log_config(),
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            server_header=False,
            lifespan="on",
        )
    )
    # uvicorn shuts down on SIGTERM (systemd, docker stop), then sends it again to the
    # handler it found: this one makes that the Ctrl-C way out, clean-up included, not a
    # death by signal that skips it.
    previous = _on_sigterm(_interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it shut down on: for a server that is the way out
    finally:
        _on_sigterm(previous)
        sock.close()
        app.close()
        if outbox is not None:
            outbox.stop()  # the command's end delivers what is due, then closes it
    say(shown("Stopped."))


def _check_tls(certfile: str, keyfile: str) -> None:
    """Refuse a certificate and key that TLS cannot use (`ConfigurationError`)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # A key under a passphrase is refused, never asked for on the terminal.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            "--ssl-certfile",
            f"cannot serve TLS with --ssl-certfile {certfile} and --ssl-keyfile {keyfile}: "
            "they must be a PEM certificate (or chain) and its own private key, without a "
            f"passphrase ({getattr(exc, 'reason', None) or type(exc).__name__})",
        ) from None


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    """Make *handler* SIGTERM's; return the one before (None off the main thread)."""
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


COMMANDS = [serve]
