"""Worker training loops, one module per method: sg, bp (sync, pipeline, local), kt, dp_async."""
