"""Every on-disk format: records and their columns, the file names, the dense cache and the
job cache, checkpoints, logs, atomic writes, bit-packed masks, digests, the job dir's lock,
a sweep's list of jobs. No training code.
"""
