"""`spotdiff debug`: the post's Difference #2 (pdb and print vs tfdbg) as measurements.

Parent side (no framework import): schema.py (probes, modes, row schema), harness.py (one child
per framework and mode), output.py (debug.json, table, debug.html), cli.py (the verb).
Child side: worker.py drives user_model.py's forwards through <framework>_probes.py.
"""
