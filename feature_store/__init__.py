"""Patient features: one definition shared by training, the stream and Feast (`definitions.py`),
the Feast repo in code (`repo.py`) and the scoring UDF's feature source over it (`online.py`)."""
