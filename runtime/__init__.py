"""Scan runtime: process image, scan engine, IO drivers, servers, cloud and cluster wiring."""

__version__ = "0.1.0"
