"""On PYTHONPATH of a Ray node in tests/test_ray.py: a node where grokjax is not installed."""

raise ImportError("grokjax is not installed on this node")
