"""Scan runtime: the engine, process image, IO drivers, servers, persistence and cluster service.

It wires the site from its io_map: the program contract (`plc`), the programs and the plant
simulator sit below it; the user's tools (`ems`) above.
"""

__version__ = "0.1.0"
