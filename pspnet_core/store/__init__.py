"""The run store: run folders and their state, locks, provenance of figures, the study's state
file. Stores and reads; builds no network and trains nothing."""
