"""The verify process pool: whole-ledger verification in batches, here and in worker processes.

``pool`` owns cutting the ledger into batches, starting the workers, giving them batches within
a window, and feeding the answers in order to the core's ``LedgerVerifier``; ``batch`` is what
checks one batch (wherever it runs); ``worker`` is a worker process's loop. The package imports
the ledger core and the standard library only: the caller says how to read the database (a
``batch.Reader`` here and a picklable ``batch.ReaderSource`` for the workers). It never touches
the garbage collector of the process that calls it; a worker tunes its own.
"""
