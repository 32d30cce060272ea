"""The application layer: the entry point, the preflight, Hydra's callbacks and the
launchers' work; the only code that reads a DictConfig (below it, typed objects only).
"""
