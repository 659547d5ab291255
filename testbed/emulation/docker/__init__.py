"""The docker backend: one capped container per device, images, standing stacks, cleanup."""
