"""What every benchmark shares: console output and docs blocks, facts about the machine, child processes."""
