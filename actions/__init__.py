"""Custom actions (rasa_sdk), one module per domain. They use backend/ and never bot/, so the
same package also runs in a plain rasa_sdk action server: `python -m rasa_sdk --actions actions`."""
