"""Preprocessing shared by training and serving: one copy, so a model sees the same input in both."""
