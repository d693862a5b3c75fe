"""Small, dependency-free building blocks shared by every stage (no torch imports here)."""
