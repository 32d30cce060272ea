"""One job, start to end: its status, its plan, the spine that runs it (alone or as one of N
arms in lockstep), its records and its artifacts."""
