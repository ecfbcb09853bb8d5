"""Auto-lock policy: which findings lock a gun or a whole station at once.

``control.auto_lock`` maps a rule id to ``off`` (the default for every rule), ``gun`` or
``station``. A finding's ``source`` is the scale, gun or camera that saw it; a scale is
mapped to its gun through the site's configuration. When a gun-level policy meets a
finding that names no gun (a camera saw it), the station is locked: the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.config import Config, SiteConfig
from monitor.control.model import MAX_REASON
from monitor.findings import Finding

ACTOR = "system:auto-lock"


@dataclass(frozen=True)
class AutoLock:
    site: str
    guns: tuple[str, ...]
    scope: Literal["gun", "station"]
    reason: str
    note: str | None = None  # why the scope differs from the policy's, if it does


def gun_of(site: SiteConfig, finding: Finding) -> str | None:
    """The gun a finding is about: its source or subject as a gun, or a scale's gun."""
    for name in (finding.source, finding.subject, finding.details.get("gun")):
        if isinstance(name, str) and name in site.guns:
            return name
    for sc in site.scales:
        if sc.id in (finding.source, finding.details.get("scale")):
            return sc.gun
    return None


def auto_lock_for(finding: Finding, cfg: Config) -> AutoLock | None:
    mode = cfg.control.auto_lock.get(finding.rule, "off")
    if mode == "off" or not finding.active:
        return None
    try:
        site = cfg.site(finding.site)
    except KeyError:
        return None
    if site.kind != "station" or not site.guns:
        return None
    reason = f"auto-lock: {finding.rule}: {finding.summary}"[:MAX_REASON]
    if mode == "gun":
        gun = gun_of(site, finding)
        if gun is not None:
            return AutoLock(site.id, (gun,), "gun", reason)
        note = f"no gun named by {finding.source!r}; the station is locked"
        return AutoLock(site.id, tuple(site.guns), "station", reason, note)
    return AutoLock(site.id, tuple(site.guns), "station", reason)
