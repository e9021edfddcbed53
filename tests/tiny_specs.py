"""Small specs shared by the tests: big enough to have conv, pool, flatten and FC, small
enough to train on 8x8 digits in seconds."""

TINY_CNN_SPEC = {"name": "tinycnn", "input_shape": [1, 8, 8], "num_classes": 10, "layers": [
    {"type": "conv", "name": "conv0", "out_channels": 8, "kernel": 3, "stride": 1, "padding": 1, "bn": True, "act": True},
    {"type": "pool", "kernel": 2},
    {"type": "conv", "name": "conv1", "out_channels": 12, "kernel": 3, "stride": 1, "padding": 1, "bn": True, "act": True},
    {"type": "flatten"},
    {"type": "fc", "name": "fc0", "out_features": 24, "bn": True, "act": True},
    {"type": "fc", "name": "fc1", "out_features": 10, "bn": False, "act": False}]}
