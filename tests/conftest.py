"""Shared test setup: quiet TensorFlow, a tmp results root for runs started by tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TESTBED_OFFLINE", "1")
