"""Tests of the UI server and the nginx deployment config."""
