"""The machine and the file system: where things live (paths), how files are written (atomic,
torch files), what the hardware computes (precision, device), child processes, and the error
boundary every command ends in. Imports nothing else of the package."""
