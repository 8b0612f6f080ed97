"""The CAN BMS driver and its DBC loading (cantools)."""
