"""Tests of the backend store: tariffs, seed data, services and migrations."""
