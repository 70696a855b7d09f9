"""Validation evidence: the requirements coi is validated against, traced to the tests that prove
them (``trace``), and the installation and operational qualification that ``coi validate`` runs
on a site's own installation."""
