"""The in-process training engine: session, loop, progress; used by in-process runs and KT's teacher phase."""
