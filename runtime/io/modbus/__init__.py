"""The Modbus TCP/RTU client driver: device profiles, read plans, codec and transport."""
