"""Load benchmarks for the chatbot service (run as scripts, e.g. `python benchmarks/turns.py`)."""
