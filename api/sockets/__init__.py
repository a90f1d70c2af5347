"""The websockets server: driver and dispatcher protocols."""
