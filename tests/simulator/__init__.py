"""Tests of runcomfy_async.simulator."""
