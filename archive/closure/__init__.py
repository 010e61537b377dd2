"""Closure and consent withdrawal mechanics (issue 10): shredding, the ordered wipe,
and its verification. Plain Python, no Orthanc: the governance room decides whether a
wipe may run; this room does it and proves what is left."""
