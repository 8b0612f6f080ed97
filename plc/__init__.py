"""The program contract: everything a site program may see of the controller, and nothing more.

`plc` sits at the bottom of the layers (docs/architecture.md). It holds the vocabulary of the
scan: tag declarations and qualities (`plc.tags`), the program base class, the scan context
and the tag lookup (`plc.program`), and kinds loaded by name (`plc.kinds`). It imports
nothing of ours and does no IO, so `programs/` (which may import only `plc` and `blocks`)
can be read, tested and run without the runtime, and the runtime can change beneath them.
The name is the PLC's: a program sees a process image and a scan cycle, never a device.
"""
