"""Pure training math on tensors: backprop, synthetic gradients (DNI), local losses, knowledge transfer.

No files, sockets, clocks or processes here: the in-process trainer and the distributed
workers call exactly these functions, so in-process runs are the reference for distributed ones.
"""

from testbed.registry import Registry

ALGORITHMS: Registry[str] = Registry("algorithm")
ALGORITHMS.register("bp")("end-to-end backprop (backward locking)")
ALGORITHMS.register("sg")("synthetic gradients / decoupled neural interfaces")
ALGORITHMS.register("local")("local-loss learning: an auxiliary classifier per stage, no backward")
ALGORITHMS.register("kt")("knowledge transfer teacher -> student: independent, kd, section-kt")
