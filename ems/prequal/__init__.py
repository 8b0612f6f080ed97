"""`ems prequal`: the Nordic prequalification tests on the simulated site or a running unit.

`sequences` holds the test signals as tables, `runner` plays them on the simulator, `live` on
a unit through its Modbus tag server, `evaluate` judges every requirement that applies,
`stability` does the sine fits and the Nyquist margin, `plots` and `report` write the results.
"""
