"""monitor.detectors"""
