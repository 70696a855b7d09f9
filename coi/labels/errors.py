"""The label adapter's errors: one small tree, raised before anything is printed."""

from __future__ import annotations


class LabelError(ValueError):
    """Base of every error the label renderers raise on purpose."""


class LabelContentError(LabelError):
    """The content cannot go on a label as given (wrong identifier shape, a forbidden character)."""


class LabelLayoutError(LabelError):
    """The content does not fit the chosen template (symbol or text would leave its area)."""
