"""Edge-emulation testbed for distributed deep learning (BP, synthetic gradients, knowledge transfer)."""

__version__ = "0.1.0"
