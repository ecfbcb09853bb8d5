"""monitor.video"""
