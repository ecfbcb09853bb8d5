"""monitor.control"""
