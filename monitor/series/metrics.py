"""Prometheus metrics of the series (module-level: one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

READINGS = Counter("monitor_series_readings_total", "scale readings received over MQTT", ["outcome"])
REFUSED = Counter("monitor_series_readings_refused_total", "scale readings refused, by reason", ["reason"])
SCANS = Counter("monitor_series_scans_total", "scans posted, by outcome", ["outcome"])
SPOOLED = Counter("monitor_series_spooled_total", "records written to the on-disk spool")
FLUSHED = Counter("monitor_series_flushed_total", "spooled records flushed to the database")
SPOOL_BYTES = Gauge("monitor_series_spool_bytes", "bytes waiting in the on-disk spool")
WRITER_MODE = Gauge("monitor_series_writer_spooling", "1 while the writer spools (database away)")
FILLS = Counter("monitor_series_fills_total", "fill sessions segmented")
