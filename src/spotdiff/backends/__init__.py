"""Framework-first plumbing. Each folder has the same files with the same functions:

env.py      versions(), configure(threads, seed, device), sync(x), peak_device_memory_mb()
weights.py  neutral numpy weights <-> framework tensors (added with the tasks that need it)

Only workers import these modules: importing one imports its framework.
"""
