"""Which folder holds servable models: one check for `spotdiff serve` and `spotdiff loadtest`.

Parent side: reads folder names and `export.json` only, never imports a framework.
"""

from __future__ import annotations

import json
from pathlib import Path

from spotdiff.errors import UserError
from spotdiff.serve.models import LOADERS, NAME_RE


def model_root(target: Path) -> Path:
    """The model root TARGET names (itself, or a run directory's `models/`); a UserError if none."""
    if not target.is_dir():
        raise UserError(f"no such directory: {target}; pass a model root or a run directory")
    root = target / "models" if (target / "results.json").is_file() else target
    if not servable(root):
        hint = "run `spotdiff export RUN_DIR` first" if root != target else "write one with `spotdiff export`"
        raise UserError(f"no servable model (<name>/<version>/model.*) in {root}; {hint}")
    return root


def servable(root: Path) -> dict[str, dict]:
    """Name -> {framework, format, version} for the latest version of each model the server can load."""
    exported = {}
    if (root / "export.json").is_file():
        try:
            rows = json.loads((root / "export.json").read_text()).get("artefacts", [])
            exported = {a["name"]: a for a in rows if isinstance(a, dict) and "name" in a}
        except (ValueError, AttributeError):
            exported = {}  # a damaged export.json only loses the framework labels
    found: dict[str, dict] = {}
    for version_dir in sorted(root.glob("*/*"), key=lambda p: (p.parent.name, p.name.zfill(12))):
        name = version_dir.parent.name
        if not (NAME_RE.match(name) and version_dir.name.isdigit()):
            continue
        for filename, (fmt, _) in LOADERS.items():
            if (version_dir / filename).is_file():
                parts = name.split("-")
                framework = exported.get(name, {}).get("framework") or (parts[1] if len(parts) > 2 else "?")
                found[name] = {"framework": framework, "format": fmt, "version": int(version_dir.name)}
                break
    return found
