"""Check one selective install: exactly the given plugins' providers, no other plugin importable.

Run by ``nox -s selective`` inside a fresh venv holding hub-core and the named plugin
distributions (e.g. ``python tests/selective_check.py hub-elastic``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

FIRST_PARTY = {"hub-elastic": ("hub_elastic", "elastic"), "hub-qlik": ("hub_qlik", "qlik")}
# A module name -> (distribution, provider id) table would let a third plugin join in one line.


def hub(*args: str) -> str:
    done = subprocess.run(["hub", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"`hub {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def main(installed: list[str]) -> None:
    expected = sorted(FIRST_PARTY[name][1] for name in installed)
    listed = sorted(p["id"] for p in json.loads(hub("providers", "--json")))
    if listed != expected:
        sys.exit(f"expected providers {expected}, `hub providers` listed {listed}")
    for dist, (module, provider) in FIRST_PARTY.items():
        present = importlib.util.find_spec(module) is not None
        if present != (dist in installed):
            sys.exit(f"{module} importable: {present}, but {dist} installed: {dist in installed}")
        if dist in installed:
            hub("fields", provider)
            hub("fields", provider, "--json-schema")
            hub("guide", provider)
    broken = [p for p in json.loads(hub("plugins", "--json")) if p["error"]]
    if broken:
        sys.exit(f"broken plugins: {broken}")
    # The web Hub's pages and assets ship in the wheel, extra or not; without the extra
    # `hub serve` says what to install instead of failing on an import.
    from importlib.resources import files

    web = files("hub_core") / "web"  # not hub_core.web itself: it imports the extra
    for name in ("templates/connect.html", "templates/accounts.html", "static/hub.css"):
        if not (web / name).is_file():
            sys.exit(f"the installed hub_core.web has no {name}")
    if importlib.util.find_spec("starlette") is None:
        done = subprocess.run(["hub", "serve"], capture_output=True, text=True, check=False)
        if done.returncode != 2 or "pip install 'hub-core[web]'" not in done.stderr:
            sys.exit(f"`hub serve` without the web extra: {done.returncode}\n{done.stderr}")
    heavy = "{'sqlite3', 'cryptography', 'httpx'}"
    code = f"import sys, hub_core; sys.exit(bool({heavy} & set(sys.modules)))"
    if subprocess.run([sys.executable, "-c", code], check=False).returncode:
        sys.exit("`import hub_core` imported sqlite3, cryptography or httpx")
    print(f"selective install {installed or ['core alone']}: providers {expected} - ok")


if __name__ == "__main__":
    main(sys.argv[1:])
