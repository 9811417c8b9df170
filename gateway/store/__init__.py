"""Storage: the SQLAlchemy models (`models.py`), the database handle (`db.py`), a
certification's history read back from the event log (`history.py`) and the Alembic migrations."""
