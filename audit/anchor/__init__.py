"""Anchoring the Logbook outside its database: signed checkpoints of the chain's head in an
S3 bucket with Object Lock (COMPLIANCE mode), and the checks that read them back.

``signing`` (the Ed25519 key, the signed form), ``storage`` (the bucket), ``checkpoints``
(writing one), ``refusals`` (the signed record of one the task would not write), ``coverage``
(what the checkpoints say about the chain), ``gaps`` (stretches of time with no checkpoint),
``verification`` (the full check, recorded, with its alert), ``verdict`` (its verdict read back
from the Logbook) and ``status`` (what the Logbook page shows).
"""
