"""Tests of the training and evaluation code."""
