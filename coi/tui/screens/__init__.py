"""The TUI's screens, one module per section (station, review, product, release, audit,
export, admin, enrol, correct) plus login, home and the alert and error modals."""
