"""monitor.series"""
