"""monitor.alerts"""
