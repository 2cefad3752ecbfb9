"""Evidence: what lets anyone check the record without trusting the store.

Now: the Ed25519 key that signs the audit log's heads (:mod:`.keys`), the signed heads the
server keeps in the store and in a file (:mod:`.audit_heads`), and the offline check of an
audit log against them (:mod:`.audit_verify`). Planned (issue 11): the Merkle log over spans
and audit entries, checkpoints, proofs and bundles.
"""
