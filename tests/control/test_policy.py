"""The auto-lock policy on made-up findings: off by default; scales map to their gun."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.config import Config, ControlConfig, SiteConfig, config_errors
from monitor.control.policy import auto_lock_for
from monitor.findings import Finding

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SITES = [
    SiteConfig(id="st-a", kind="station", storage_capacity=10, guns=["g1", "g2", "g3"],
               scales=[{"id": "s1", "gun": "g1"}, {"id": "s2", "gun": "g2"}]),  # type: ignore[list-item]
    SiteConfig(id="ol-b", kind="outlet", storage_capacity=10),
]


def cfg(**auto: str) -> Config:
    return Config(sites=SITES, control=ControlConfig(auto_lock=auto))  # type: ignore[arg-type]


def f(rule: str, source: str, site: str = "st-a", subject: str = "CYL123456", active: bool = True,
      **details: Any) -> Finding:
    return Finding(rule=rule, site=site, source=source, subject=subject, ts=NOW, summary="seen", active=active,
                   reason="over_age" if rule == "invalid_cylinder" else None, details=details)


@pytest.mark.parametrize(
    ("c", "finding", "want"),
    [
        (cfg(), f("overfill", "s2"), None),  # off by default
        (cfg(overfill="off"), f("overfill", "s2"), None),
        (cfg(overfill="gun"), f("overfill", "s2"), ("st-a", ("g2",), "gun")),
        (cfg(overfill="gun"), f("overfill", "g3"), ("st-a", ("g3",), "gun")),
        (cfg(fill_without_scan="gun"), f("fill_without_scan", "s9", gun="g1"), ("st-a", ("g1",), "gun")),
        (cfg(fill_without_scan="gun"), f("fill_without_scan", "s9", scale="s2"), ("st-a", ("g2",), "gun")),
        (cfg(overfill="gun"), f("overfill", "st-a-fill-cam"), ("st-a", ("g1", "g2", "g3"), "station")),
        (cfg(antistatic_during_fill="station"), f("antistatic_during_fill", "st-a-entry"),
         ("st-a", ("g1", "g2", "g3"), "station")),
        (cfg(overfill="gun"), f("overfill", "s2", active=False), None),  # a cleared condition locks nothing
        (cfg(overfill="gun"), f("overfill", "s2", site="st-zz"), None),
        (cfg(storage_over_capacity="station"), f("storage_over_capacity", "cam", site="ol-b"), None),
    ],
)
def test_auto_lock_for(c: Config, finding: Finding, want: tuple[str, tuple[str, ...], str] | None) -> None:
    al = auto_lock_for(finding, c)
    assert (None if al is None else (al.site, al.guns, al.scope)) == want
    if al is not None:
        assert al.reason.startswith(f"auto-lock: {finding.rule}: ")


def test_unknown_rule_in_the_policy_is_a_config_error() -> None:
    _, errs = config_errors("control:\n  auto_lock: {overfil: gun}\n")
    assert len(errs) == 1 and errs[0].line == 2 and "overfil" in str(errs[0])
    _, errs = config_errors("control:\n  auto_lock: {overfill: everything}\n")
    assert len(errs) == 1 and errs[0].line == 2
