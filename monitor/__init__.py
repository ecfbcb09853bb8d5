"""monitor: the supervision centre for a city's bottled LPG (燃气智慧监管)."""

__version__ = "0.1.0"
