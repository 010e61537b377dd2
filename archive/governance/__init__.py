"""Governance: the rules for images leaving the suite, sharing, closure and withdrawal.

Plain domain code (no Orthanc): removal requests and written approvals (`removals`),
the pull inventory (`pulls`), recipients, Board decisions, undertakings and the share
register (`recipients`, `sharing`, `undertaking`), closure and the wipe certificate
(`closure`, `certificate`) and the opt-out register (`optout`). Policy lives in
policies/governance and is loaded by `policy.load_policy`.
"""
