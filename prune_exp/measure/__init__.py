"""What a pruned network costs: FLOPs, bytes, latency (efficiency.py), the compacted model
(compact.py), CSR weights (csr.py).
"""
