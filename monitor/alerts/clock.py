"""The alerts part's clock: the product's one clock protocol (monitor.clock)."""

from monitor.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
