"""The web Hub: providers, Connect with the guide beside the form, Accounts (WEB.md).

Install it with the ``web`` extra (``pip install 'hub-core[web]'``); `hub serve` runs it, and a
host application mounts the app `create_app` returns::

    from hub_core import Hub, Store
    from hub_core.web import WebConfig, create_app

    app = create_app(Hub(), Store(), config=WebConfig(authorize=my_admins_only))
"""

from __future__ import annotations

from .app import HubApp, create_app
from .config import Authorize, WebConfig
from .sessions import HostSession

__all__ = ["Authorize", "HostSession", "HubApp", "WebConfig", "create_app"]
