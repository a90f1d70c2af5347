"""What workflows know of activities: each activity's name and signature (a stub class per capability,
importing only temporalio and domain/). The implementations in the sibling packages register under
the same names; tests/unit/test_activity_interfaces.py keeps the two in step."""
