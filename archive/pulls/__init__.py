"""Pulls: released cases sent to the suite's registered workstations (issue 21 use cases).

The pull log itself (which case went to which workstation, and the wipes that clear
them) stays in archive.governance.pulls.PullInventory; this room holds the acts.
"""
