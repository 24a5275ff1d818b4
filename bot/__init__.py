"""The service: dialogue runtime, channels, stores, web app and CLI (`python -m bot ...`)."""
