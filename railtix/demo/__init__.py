"""Demo data: a deterministic timetable of real Chinese high-speed lines, for trying railtix out."""
