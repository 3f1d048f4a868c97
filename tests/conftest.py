import os

# Tests see several CPU devices, so the sharded paths run here exactly as on a multi-chip host.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
