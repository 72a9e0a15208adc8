"""taskrt's benchmarks (``make bench``); figures come from here, never from pytest asserts."""
