"""Closure and consent withdrawal (issue 10): what is audited of them (auditing.py).
The mechanics of destroying data - shredding, the ordered wipe and its verification -
live in the vault (archive/vault/shred.py, archive/vault/wipe.py), so that nothing
outside it unwraps keys. The governance room decides whether a wipe may run."""
