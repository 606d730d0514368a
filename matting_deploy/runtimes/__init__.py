"""Runners: one calling convention (open / run / reset / close) over every engine."""
