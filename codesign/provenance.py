"""What produced each artefact of a run folder, so a re-run never reuses the wrong one.

`codesign run`/`search` skip steps whose output exists (resume). That is only right when the
output came from the same settings: a run folder trained for `model: tfc` must not hand its
float.pt to a config that now says `model: sfc` (it did, and searched on the old network).
Every step records the settings it was produced with in RUN/provenance.json (a hash and the
settings themselves); reusing an artefact checks them first and a difference is one clear
line naming what changed and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from codesign.atomic import write_json
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

FILE = "provenance.json"


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _load(out: Path) -> dict[str, Any]:
    p = Path(out) / FILE
    if not p.is_file():
        return {}
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise CodesignError(f"{p} is not valid JSON ({exc}); delete it and the artefacts it describes") from exc
    return d if isinstance(d, dict) else {}


def record(out: str | Path, step: str, artefact: str | Path, settings: dict[str, Any]) -> None:
    """Remember that `artefact` of `step` was produced with `settings`."""
    out = Path(out)
    d = _load(out)
    d[step] = {"artefact": Path(artefact).name, "hash": settings_hash(settings), "settings": settings}
    write_json(out / FILE, d)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check_reuse(out: str | Path, step: str, artefact: str | Path, settings: dict[str, Any],
                fallback: dict[str, Any] | None = None) -> None:
    """Raise unless the existing `artefact` was produced with `settings`.

    `fallback`: what the artefact itself says it was made from (e.g. a checkpoint's meta), used
    for run folders written before provenance was recorded (only the keys it has are compared)."""
    out, artefact = Path(out), Path(artefact)
    rec = _load(out).get(step)
    if rec is not None:
        if rec.get("hash") == settings_hash(settings):
            return
        diff = _diff(rec.get("settings", {}), settings)
    elif fallback is not None:
        diff = _diff({k: fallback[k] for k in fallback if k in settings},
                     {k: settings[k] for k in fallback if k in settings})
        if not diff:
            log.info("%s: no provenance record (older run folder); its own metadata matches", artefact)
            return
    else:
        log.warning("%s: no provenance record (older run folder); reusing it unchecked", artefact)
        return
    raise CodesignError(f"{artefact} was produced with other settings ({'; '.join(diff)}); it would be reused "
                        f"silently. Use another `out:` folder for the new settings, or delete {artefact} "
                        "(and what was built from it) to redo that step")
