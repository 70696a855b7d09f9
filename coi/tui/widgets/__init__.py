"""The TUI's own widgets: the scan field that tells a scanner from typing, and large text."""
