"""monitor.sim"""
