"""The pure core of the chain of identity: identifiers, scans, the process and its rules.

No database, UI or CLI library, no clock and no I/O beyond reading a definition file. Modules:

* identifiers and scans — :mod:`.isbt` (ISBT 128 structures), :mod:`.payload` (coi's label
  codes), :mod:`.scan` (what a scanner typed, parsed into one of those);
* the process as data — :mod:`.process` (the model), :mod:`.loader` with :mod:`.loader_steps`
  and :mod:`.loader_reader` (TOML to a validated model);
* the rules — :mod:`.facts` (what the ledger and the rules exchange), :mod:`.state` (every
  product's state, rebuilt fact by fact), :mod:`.fields` (raw text to typed values),
  :mod:`.rules` (one module per concern), :mod:`.check` (runs them), :mod:`.replay` (checks every
  recorded step again: ``coi verify``), :mod:`.messages` (every sentence they say);
* :mod:`.errors` — the domain's exceptions, importing nothing else of the domain.

Nothing is re-exported here: import each name from the module that owns it.
"""
