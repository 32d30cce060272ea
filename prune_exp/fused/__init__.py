"""Fused arms: the jobs of a sweep that share a round structure train together, in lockstep,
in one process (issue 14).

Each arm keeps its own network, pruner, cycle, records and job dir, built exactly as an
unfused job's (job/arm.prepare); only the training steps are shared: the arms'
parameters stacked along a leading dim (stack.py), one vmapped forward and backward, one
optimizer step with a learning rate per arm (optim.py), inside one Lightning fit
(module.py, cycle.py). launch.py groups the jobs by their configs, group.py fits a group.
"""
