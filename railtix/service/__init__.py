"""The service: one writer per process with group commit, auth, idempotency and hold expiry."""
