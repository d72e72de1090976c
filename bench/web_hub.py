"""The web benchmark's server for hub: the real web Hub under uvicorn, in a process of its own.

``python bench/web_hub.py HOME PORT``, run by `web.py`. It serves
``hub_core.web.create_app(Hub(), Store(HOME/hub.db), config=WebConfig(auth_token=...))`` on
127.0.0.1:PORT, exactly as a host application would build it: the installed plugins, the
store's own key file in HOME, sign-in by the dashboard token. The token comes in the
environment (``HUB_BENCH_WEB_TOKEN``), never in argv, as `hub serve` keeps it out of ``ps``.

uvicorn runs with the baseline's settings (`web_bare.server_options`): httptools and uvloop
when installed (the bench group installs both), no access log, one worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn
from web_bare import server_options

from hub_core import Hub
from hub_core.store import Store
from hub_core.web import WebConfig, create_app


def main(argv: list[str]) -> None:
    home, port = Path(argv[0]), int(argv[1])
    token = os.environ.pop("HUB_BENCH_WEB_TOKEN")
    hub = Hub()
    hub.provider("elastic")  # fail now, not on the first page, when hub-elastic is missing
    store = Store(home / "hub.db")
    app = create_app(hub, store, config=WebConfig(auth_token=token))
    try:
        uvicorn.run(app, port=port, lifespan="on", **server_options())  # type: ignore[arg-type]
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
