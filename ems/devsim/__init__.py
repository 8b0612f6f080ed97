"""Device simulators: profile-driven Modbus servers and a simulated CAN BMS, fed by the plant model."""
