"""The file a capacity run marks its steps in: written by the load shape, read by analysis."""

STEPS_FILE = "steps.csv"
STEP_COLUMNS = ("step", "users", "start", "hold_start", "end", "verdict", "breaches")
