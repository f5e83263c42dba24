"""``make faults``: the fault campaign of issue 10 against private sandboxes.

Families (crash sweeps of both jobs and both delivery modes, SIGTERM, concurrency, storms, bad
input, secrets) each run scenarios on fresh sandboxes, then count what went wrong: duplicate
invoices, double mails, lost invoices, lost tokens, leaked secrets and unrecovered work. See
sandbox/README.md, "Fault campaign".
"""
