"""Typed application state: every ``web.AppKey`` of the service, in one module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from monitor.alerts.service import AlertsService
    from monitor.config import Config
    from monitor.control.authorizer import Authorizer
    from monitor.control.service import ControlService
    from monitor.findings import FindingBus
    from monitor.mqtt import MqttBus
    from monitor.store.db import Database
    from monitor.tasks import TaskGroup
    from monitor.video.service import VideoService
    from monitor.web.auth import LoginThrottle
    from monitor.web.hub import Hub
    from monitor.web.overview import Overview

CONFIG: web.AppKey[Config] = web.AppKey("config")
DB: web.AppKey[Database] = web.AppKey("db")
BUS: web.AppKey[MqttBus] = web.AppKey("bus")
TASKS: web.AppKey[TaskGroup] = web.AppKey("tasks")
HUB: web.AppKey[Hub] = web.AppKey("hub")
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle")
FINDINGS: web.AppKey[FindingBus] = web.AppKey("findings")
ROLES: web.AppKey[frozenset[str]] = web.AppKey("roles")
# Each area keeps its service object under its own key; the value's type is the area's.
SERVICES: web.AppKey[dict[str, Any]] = web.AppKey("services")
# How other processes reach this one (``monitor.app.advertised_url``; set by ``run``).
ADVERTISED: web.AppKey[str] = web.AppKey("advertised")
# Control (monitor/control): gun lock state and the interlock.
CONTROL: web.AppKey[ControlService] = web.AppKey("control")
INTERLOCK: web.AppKey[Authorizer] = web.AppKey("interlock")
# Video (monitor/video): the cameras of this process; frames, snapshots, clips.
VIDEO: web.AppKey[VideoService] = web.AppKey("video")
# The wallboard's server side (monitor/web/overview.py): sites, counts, charts.
OVERVIEW: web.AppKey[Overview] = web.AppKey("overview")
# Alerts and incidents (monitor/alerts): the engine, evidence and the API's service.
ALERTS: web.AppKey[AlertsService] = web.AppKey("alerts")

if TYPE_CHECKING:
    from monitor.alerts.correlation.engine import LiveCorrelation
    from monitor.series.service import SeriesService

# Scale and scan series (monitor/series): ingest, spool, fill sessions, scans.
SERIES: web.AppKey[SeriesService] = web.AppKey("series")
# The correlation rules at run time (monitor/alerts/correlation).
CORRELATION: web.AppKey[LiveCorrelation] = web.AppKey("correlation")

if TYPE_CHECKING:
    from monitor.detectors.service import DetectorService

# Detectors (monitor/detectors): model runner, tracking, rules over this process's cameras.
DETECTORS: web.AppKey[DetectorService] = web.AppKey("detectors")
