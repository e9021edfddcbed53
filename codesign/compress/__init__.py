"""Relevance-driven compression: pruning (`prune`), the measured sensitivity table
(`sensitivity`: relevance lost per layer and bits, shared with the search), bit allocation
(`bits`: greedy walk; `ilp`: exact under the hardware budget), weight sharing (`cluster`) and
the flow that chains them with QAT and export (`pipeline`).

The co-design search calls `pipeline.compress(float_ckpt, relevance, out, CompressConfig(...))`,
or the pieces: `prune.prune_structured`, `prune.weight_masks`, `bits.allocate_bits`,
`cluster.cluster_layer`. The rules are in docs/compression.md.
"""
