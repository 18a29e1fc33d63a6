"""VBench dimensions re-implemented on our own stack (the `vbench` package pins transformers 4.33).

Each module follows VBench 0.1.5's protocol for its dimensions and says where the number can differ.
"""
