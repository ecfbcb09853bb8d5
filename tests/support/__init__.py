"""Test services: real PostgreSQL, Mosquitto, RTSP server and browser on loopback."""
