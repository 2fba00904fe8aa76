"""The night's signals -> warnings with a memory (pending, firing, resolved), snoozes, and who hears of each."""
